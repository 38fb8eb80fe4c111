//! The running node: [`Node::spawn`] starts it and returns a [`NodeHandle`].
//!
//! Three parts, each owning what it changes (rust-libp2p's file-sharing example, without its panics):
//! - the **swarm task** (`EventLoop` here) owns the libp2p `Swarm`: it dials, publishes, answers
//!   gossipsub with the writer's verdicts, and carries catch-up requests;
//! - the **writer thread** (`ingest.rs`) owns every store write;
//! - the **sync task** (`catchup.rs`) runs catch-up sessions through the swarm task.
//!
//! A `NodeHandle` is cheap to clone. It sends commands over a bounded channel with a oneshot reply,
//! reads the store directly (sled reads are concurrent), and subscribes to events. Shutdown is
//! explicit: [`NodeHandle::shutdown`] stops the sync task, closes every connection, drains the
//! writer's queue, flushes and closes the store, and only then returns.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError, TopicHash};
use libp2p::kad::{self, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, mdns};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use troc_protocol::{Identity, RecordBody, Signed, SignedRecord};

use crate::catchup::{SyncDriver, SyncSummary, ToSync};
use crate::config::NodeConfig;
use crate::deals::service::{DealCtx, ToDeals};
use crate::deals::{DEAL_RATE, DealAnswer, DealRequest, DealResponse, MAX_DEAL_INBOUND};
use crate::events::{EVENT_CAPACITY, NodeEvent};
use crate::ingest::{ItemResult, Job, Origin, ToSwarm, Writer};
use crate::limits::{RateLimiter, Strikes};
use crate::metrics::{Metrics, MetricsSnapshot, Source};
use crate::network::{self, Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::paths::is_relayed;
use crate::reputation::ReputationService;
use crate::store::{Store, StoreConfig, StoreError};
use crate::sync::{SyncRequest, SyncResponse};
use crate::{now_secs, topics};

/// Commands from handles (and the sync task) to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    /// Keep a peer connected from now on, like a configured bootstrap peer.
    AddBootstrap {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Follow {
        community: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Disconnect {
        peer: PeerId,
    },
    GossipRaw {
        scope: String,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    SendSync {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, String>>,
    },
    RespondSync {
        channel: u64,
        response: SyncResponse,
    },
    /// Sends a direct deal message (dialling the peer by its PeerId if needed).
    SendDeal {
        peer: PeerId,
        request: DealRequest,
        reply: oneshot::Sender<Result<DealResponse, String>>,
    },
    RespondDeal {
        channel: u64,
        response: DealResponse,
    },
    /// `count` strikes against a peer that sent invalid records through catch-up.
    Strike {
        peer: PeerId,
        count: usize,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A connected peer, as the node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    #[serde(serialize_with = "crate::events::display")]
    pub peer_id: PeerId,
    pub addresses: Vec<String>,
    pub agent: Option<String>,
    pub score: Option<f64>,
    pub relayed: bool,
}

/// What can go wrong starting or talking to a node.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("could not open the store")]
    Store(#[from] StoreError),
    #[error("could not build the network")]
    Network(#[from] network::BuildError),
    #[error("could not listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("the node did not start listening within {0:?}")]
    ListenTimeout(Duration),
    #[error("the node has shut down")]
    ShutDown,
    #[error("could not start the writer thread")]
    Thread(#[source] std::io::Error),
    #[error("{0}")]
    Failed(String),
    #[error("invalid record")]
    Record(#[from] troc_protocol::RecordError),
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

/// A cheap, cloneable handle on a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) deals: DealCtx,
    pub(crate) reputation: ReputationService,
    commands: mpsc::Sender<Command>,
    ingest: mpsc::Sender<Job>,
    to_sync: mpsc::Sender<ToSync>,
    store: Store,
    events: broadcast::Sender<NodeEvent>,
    metrics: Metrics,
    identity: Arc<Identity>,
    peer_id: PeerId,
    scopes: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the store, builds the swarm, starts listening, and spawns the node's tasks. Returns
    /// once the node listens on every configured address.
    pub async fn spawn(config: NodeConfig) -> Result<(NodeHandle, broadcast::Receiver<NodeEvent>), NodeError> {
        let store_cfg = StoreConfig {
            cache_bytes: config.store_cache_bytes,
            quotas: config.quotas,
            ..StoreConfig::new(config.db_path())
        };
        let store = tokio::task::spawn_blocking(move || Store::open(store_cfg))
            .await
            .map_err(|e| NodeError::Failed(e.to_string()))??;

        let metrics = Metrics::new();
        let mut swarm = network::build_swarm(&config, &metrics)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen { addr: addr.clone(), reason: e.to_string() })?;
        }
        let listen_addrs = wait_listening(&mut swarm, config.listen.len()).await?;
        if config.kad_server {
            swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
        }

        let mut scopes = vec![topics::scope_name(None)];
        for c in &config.communities {
            let s = topics::scope_name(Some(c));
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        for s in &scopes {
            subscribe(&mut swarm, s);
        }

        let (events, events_rx) = broadcast::channel(EVENT_CAPACITY);
        // Subscribed before anything can be stored, so the reputation service misses no record.
        let reputation_events = events.subscribe();
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (ingest_tx, ingest_rx) = mpsc::channel(config.limits.ingest_queue);
        let (to_swarm_tx, to_swarm_rx) = mpsc::channel(1024);
        let (to_sync_tx, to_sync_rx) = mpsc::channel(256);
        let (to_deals_tx, to_deals_rx) = mpsc::channel(MAX_DEAL_INBOUND * 2);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let scopes = Arc::new(RwLock::new(scopes));

        let writer = Writer {
            local: *config.identity.public(),
            store: store.clone(),
            metrics: metrics.clone(),
            limits: config.limits.clone(),
            rx: ingest_rx,
            to_swarm: to_swarm_tx,
            events: events.clone(),
        };
        std::thread::Builder::new()
            .name("troc-writer".into())
            .spawn(move || writer.run())
            .map_err(NodeError::Thread)?;

        let peer_id = *swarm.local_peer_id();
        let deals = DealCtx {
            commands: cmd_tx.clone(),
            ingest: ingest_tx.clone(),
            store: store.clone(),
            identity: Arc::new(config.identity.clone()),
            events: events.clone(),
            metrics: metrics.clone(),
            outbox: crate::store::OutboxLimits::default(),
            to_deals: to_deals_tx.clone(),
            clock: crate::deals::service::DealClock::default(),
        };
        let deal_service = tokio::spawn(crate::deals::service::run(
            deals.clone(),
            to_deals_rx,
            shutdown_rx.clone(),
            config.timing.deal_retry,
        ));
        let reputation =
            ReputationService::start(store.clone(), *config.identity.public(), reputation_events, shutdown_rx.clone());
        let handle = NodeHandle {
            deals,
            reputation,
            commands: cmd_tx.clone(),
            ingest: ingest_tx.clone(),
            to_sync: to_sync_tx.clone(),
            store: store.clone(),
            events: events.clone(),
            metrics: metrics.clone(),
            identity: Arc::new(config.identity.clone()),
            peer_id,
            scopes: scopes.clone(),
        };

        let driver = SyncDriver::new(
            cmd_tx,
            ingest_tx.clone(),
            store.clone(),
            metrics.clone(),
            events.clone(),
            scopes.clone(),
            config.limits.clone(),
            config.timing.sync_interval,
            to_sync_rx,
            shutdown_rx.clone(),
        );
        let driver = tokio::spawn(driver.run());

        let mut event_loop = EventLoop {
            swarm,
            commands: cmd_rx,
            from_writer: to_swarm_rx,
            ingest: ingest_tx,
            to_sync: to_sync_tx,
            events: events.clone(),
            metrics,
            peer_rate: RateLimiter::new(config.limits.peer_gossip, 10_000),
            strikes: Strikes::new(config.limits.strikes, config.limits.strikes_forgiven_per_sec, 10_000),
            banned: HashMap::new(),
            sync_out: HashMap::new(),
            sync_in: HashMap::new(),
            deal_out: HashMap::new(),
            deal_in: HashMap::new(),
            deal_rate: RateLimiter::new(crate::limits::Rate::new(DEAL_RATE.0, DEAL_RATE.1), 10_000),
            to_deals: to_deals_tx,
            deal_service: Some(deal_service),
            next_channel: 0,
            dials: HashMap::new(),
            pending_publish: HashMap::new(),
            own_pace: {
                // Empty at start: peers that stayed up still count what this node sent before a
                // restart, so a full burst right after one could take them over their count.
                let mut pace = RateLimiter::new(own_gossip_pace(config.limits.author_gossip), 1);
                pace.empty(&(), Instant::now());
                pace
            },
            paced: VecDeque::new(),
            pace_due: None,
            bootstrap: HashMap::new(),
            listen_addrs,
            agents: HashMap::new(),
            remotes: HashMap::new(),
            relays: HashSet::new(),
            relay_routes: HashMap::new(),
            nat_private: false,
            scopes,
            config: config.clone(),
            shutdown: shutdown_tx,
            driver: Some(driver),
        };
        for addr in &config.bootstrap {
            match peer_of(addr) {
                Some(peer) => {
                    event_loop.bootstrap.insert(
                        peer,
                        Bootstrap { addr: addr.clone(), next_try: Instant::now(), backoff: Duration::from_secs(1) },
                    );
                    event_loop.swarm.behaviour_mut().kad.add_address(&peer, strip_p2p(addr));
                }
                None => tracing::warn!(%addr, "bootstrap address without /p2p/<peer id> ignored"),
            }
        }
        for addr in event_loop.listen_addrs.clone() {
            let _ = events.send(NodeEvent::Listening { address: addr });
        }
        tokio::spawn(event_loop.run());
        Ok((handle, events_rx))
    }
}

/// Polls the swarm until it listens on `n` addresses (port 0 resolves to a real port).
async fn wait_listening(swarm: &mut Swarm<Behaviour>, n: usize) -> Result<Vec<Multiaddr>, NodeError> {
    let limit = Duration::from_secs(10);
    let mut addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while addrs.len() < n {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => addrs.push(address),
            Ok(SwarmEvent::ListenerError { error, .. }) => {
                return Err(NodeError::Failed(format!("listener failed: {error}")));
            }
            Ok(_) => {}
            Err(_) => return Err(NodeError::ListenTimeout(limit)),
        }
    }
    Ok(addrs)
}

fn subscribe(swarm: &mut Swarm<Behaviour>, scope: &str) {
    let topic = topics::topic(scope);
    let g = &mut swarm.behaviour_mut().gossipsub;
    if let Err(e) = g.subscribe(&topic) {
        tracing::warn!(%scope, error = %e, "could not subscribe");
    }
    let _ = g.set_topic_params(topic, network::topic_score_params());
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None })
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}

fn community_key(community: &str) -> RecordKey {
    RecordKey::new(&format!("troc/v1/community/{community}"))
}

impl NodeHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The store, for reads. Writes go through [`NodeHandle::publish`].
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Counts a request the local API refused (the API shares the node's counters).
    pub(crate) fn count_api_refusal(&self, code: &'static str) {
        self.metrics.api_refused(code);
    }

    /// The scopes this node follows: `global` and `community/<slug>` for each community.
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stores a record through the one ingest path and, once stored, gossips it on its topic.
    pub async fn publish(&self, record: &SignedRecord) -> Result<ItemResult, NodeError> {
        let mut results = self.ingest_local(vec![record.bytes().to_vec()]).await?;
        results.pop().ok_or(NodeError::ShutDown)
    }

    /// Signs `body` as this node's identity, now, and publishes it.
    pub async fn sign_and_publish<T: RecordBody>(&self, body: T) -> Result<(Signed<T>, ItemResult), NodeError> {
        let record = Signed::sign(&self.identity, now_secs(), body)?;
        let result = self.publish(&record.clone().into_any()).await?;
        Ok((record, result))
    }

    /// Stores many local records in one batch (imports, tests).
    pub async fn ingest_local(&self, items: Vec<Vec<u8>>) -> Result<Vec<ItemResult>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.ingest
            .send(Job::Records { origin: Box::new(Origin::Local), items, reply: Some(tx) })
            .await
            .map_err(|_| NodeError::ShutDown)?;
        rx.await.map_err(|_| NodeError::ShutDown)
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NodeError::ShutDown)?;
        rx.await.map_err(|_| NodeError::ShutDown)
    }

    /// Dials `addr` and waits until the connection is up (or failed).
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        self.call(|reply| Command::Dial { addr, reply }).await?.map_err(NodeError::Failed)
    }

    /// Adds a peer to keep connected (dialled now, and again with backoff whenever the connection
    /// drops), as if it had been configured as a bootstrap peer. The address must end in
    /// `/p2p/<peer id>`.
    pub async fn add_bootstrap(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        self.call(|reply| Command::AddBootstrap { addr, reply }).await?.map_err(NodeError::Failed)
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The addresses the node listens on (with port 0 resolved).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Listen addresses with `/p2p/<our peer id>` appended: what another node dials.
    pub async fn dial_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        let id = self.peer_id;
        Ok(self.listen_addrs().await?.into_iter().map(|a| a.with(Protocol::P2p(id))).collect())
    }

    /// Gossipsub's score of a peer (None if unknown).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NodeError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    /// Starts following a community: its gossip topic and its catch-up scope.
    pub async fn follow(&self, community: &str) -> Result<(), NodeError> {
        let community = community.to_owned();
        self.call(|reply| Command::Follow { community, reply }).await?.map_err(NodeError::Failed)
    }

    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NodeError> {
        self.commands.send(Command::Disconnect { peer }).await.map_err(|_| NodeError::ShutDown)
    }

    /// Runs catch-up with every connected peer now and waits for it.
    pub async fn sync_now(&self) -> Result<SyncSummary, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.to_sync.send(ToSync::SyncNow { reply: tx }).await.map_err(|_| NodeError::ShutDown)?;
        rx.await.map_err(|_| NodeError::ShutDown)
    }

    /// Publishes raw bytes on a scope's topic without any check. For tests that play a hostile peer.
    #[doc(hidden)]
    pub async fn gossip_raw(&self, scope: &str, bytes: Vec<u8>) -> Result<(), NodeError> {
        let scope = scope.to_owned();
        self.call(|reply| Command::GossipRaw { scope, bytes, reply }).await?.map_err(NodeError::Failed)
    }

    /// Sends a raw catch-up request to a peer and returns its answer. For tests that play a hostile
    /// peer.
    #[doc(hidden)]
    pub async fn sync_raw(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, NodeError> {
        self.call(|reply| Command::SendSync { peer, request, reply }).await?.map_err(NodeError::Failed)
    }

    /// Shuts the node down: connections closed, queue drained, store flushed and closed.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.call(|reply| Command::Shutdown { reply }).await?.map_err(NodeError::Failed)
    }
}

/// Bootstrap peers kept connected at most (configured and added at run time together).
const MAX_BOOTSTRAP_PEERS: usize = 64;

/// A bootstrap peer kept connected.
#[derive(Debug)]
struct Bootstrap {
    addr: Multiaddr,
    next_try: Instant,
    backoff: Duration,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    from_writer: mpsc::Receiver<ToSwarm>,
    ingest: mpsc::Sender<Job>,
    to_sync: mpsc::Sender<ToSync>,
    events: broadcast::Sender<NodeEvent>,
    metrics: Metrics,
    peer_rate: RateLimiter<PeerId>,
    strikes: Strikes<PeerId>,
    /// Peers disconnected for abuse, until when.
    banned: HashMap<PeerId, Instant>,
    sync_out: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    sync_in: HashMap<u64, ResponseChannel<SyncResponse>>,
    deal_out: HashMap<OutboundRequestId, oneshot::Sender<Result<DealResponse, String>>>,
    deal_in: HashMap<u64, ResponseChannel<DealResponse>>,
    /// Direct deal requests per peer.
    deal_rate: RateLimiter<PeerId>,
    to_deals: mpsc::Sender<ToDeals>,
    /// The deal service, awaited at shutdown.
    deal_service: Option<tokio::task::JoinHandle<()>>,
    next_channel: u64,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
    pending_publish: HashMap<TopicHash, VecDeque<Vec<u8>>>,
    /// This node's own gossip, kept under every peer's per-author rate (`publish_paced`).
    own_pace: RateLimiter<()>,
    paced: VecDeque<(String, Vec<u8>)>,
    /// When the first of `paced` may leave, for the event loop's pace timer to pick up.
    pace_due: Option<Instant>,
    bootstrap: HashMap<PeerId, Bootstrap>,
    listen_addrs: Vec<Multiaddr>,
    agents: HashMap<PeerId, String>,
    /// The remote address of each open connection, per peer (at most `max_connections_per_peer`):
    /// after hole punching a peer has a relayed and a direct connection, and `/v1/peers` must say so.
    remotes: HashMap<PeerId, Vec<Remote>>,
    /// The relays we hold a reservation with (we listen through them).
    relays: HashSet<PeerId>,
    /// Connected peers that serve as relays, with the address we reach each at (bounded by
    /// `MAX_RELAY_ROUTES`). Used to listen through them once autonat says we are behind NAT, and to
    /// reach a peer known only by its PeerId (a deal partner met through gossip) through them.
    relay_routes: HashMap<PeerId, Multiaddr>,
    nat_private: bool,
    scopes: Arc<RwLock<Vec<String>>>,
    config: NodeConfig,
    shutdown: watch::Sender<bool>,
    /// The sync task, awaited at shutdown so nothing of it outlives the node.
    driver: Option<tokio::task::JoinHandle<()>>,
}

/// One open connection to a peer.
#[derive(Debug)]
struct Remote {
    id: ConnectionId,
    address: Multiaddr,
    /// We dialed it (so `address` is one the peer listens on, not an ephemeral port).
    dialer: bool,
}

/// How long a peer disconnected for abuse stays refused.
const BAN: Duration = Duration::from_secs(600);
/// At most this many relays are used for reservations.
const MAX_RELAYS: usize = 2;
/// At most this many connected relays are remembered as routes to other peers.
const MAX_RELAY_ROUTES: usize = 16;
/// The pace of a node's own gossip: 80% of the per-author rate and burst that peers apply (with the
/// default configuration), so that delays on the way, which can bunch records up, never push them
/// over a peer's count. The pace starts empty (see `own_pace`): a peer's bucket for this author then
/// always holds at least as much as the pace's, since it starts no lower, refills faster and is
/// charged for the same records.
pub(crate) fn own_gossip_pace(author: crate::limits::Rate) -> crate::limits::Rate {
    crate::limits::Rate::new(author.per_sec * 0.8, (author.burst * 0.8).max(1.0))
}

/// The relay hop protocol, announced by relay servers.
const RELAY_HOP: &str = "/libp2p/circuit/relay/0.2.0/hop";

impl EventLoop {
    async fn run(mut self) {
        // Pruning and discovery once at start (from inside the loop, like any event: the swarm's
        // first events may come first), then at a random phase of their period.
        let start = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(start);
        let mut started = false;
        let mut prune = crate::config::spread_interval(self.config.timing.prune_interval);
        let mut discovery = crate::config::spread_interval(self.config.timing.discovery_interval);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        // When the next record waiting for the pace may leave (armed from `pace_due`).
        let pace = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(pace);
        loop {
            if let Some(due) = self.pace_due.take() {
                pace.as_mut().reset(tokio::time::Instant::from_std(due));
            }
            tokio::select! {
                _ = &mut pace, if !self.paced.is_empty() => self.publish_waiting(),
                _ = &mut start, if !started => {
                    started = true;
                    let _ = self.ingest.try_send(Job::Prune);
                    self.discover();
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(msg) = self.from_writer.recv() => self.on_writer(msg),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let result = self.shutdown().await;
                        let _ = reply.send(result);
                        return;
                    }
                    Some(c) => self.on_command(c),
                    // Every handle dropped: shut down quietly.
                    None => {
                        let _ = self.shutdown().await;
                        return;
                    }
                },
                _ = prune.tick() => {
                    let _ = self.ingest.try_send(Job::Prune);
                }
                _ = discovery.tick() => self.discover(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
    }

    async fn shutdown(&mut self) -> Result<(), String> {
        let _ = self.shutdown.send(true);
        if let Some(driver) = self.driver.take() {
            // The driver's sessions may wait on this loop for answers: keep serving the swarm and
            // commands while it winds down (it aborts its sessions at once).
            let mut driver = driver;
            loop {
                tokio::select! {
                    _ = &mut driver => break,
                    event = self.swarm.select_next_some() => self.on_swarm_event(event),
                    Some(c) = self.commands.recv() => match c {
                        Command::Shutdown { reply } => { let _ = reply.send(Err("already shutting down".into())); }
                        c => self.on_command(c),
                    },
                }
            }
        }
        if let Some(service) = self.deal_service.take() {
            // It stops at the shutdown signal; its delivery tasks may still wait on us, so keep
            // serving while it winds down (bounded).
            let mut service = service;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                tokio::select! {
                    _ = &mut service => break,
                    _ = tokio::time::sleep_until(deadline) => { service.abort(); break }
                    event = self.swarm.select_next_some() => self.on_swarm_event(event),
                    Some(c) = self.commands.recv() => match c {
                        Command::Shutdown { reply } => { let _ = reply.send(Err("already shutting down".into())); }
                        c => self.on_command(c),
                    },
                }
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        // Let the swarm carry out the disconnections (bounded: a peer that does not answer is cut).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.swarm.connected_peers().next().is_some() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let (tx, rx) = oneshot::channel();
        self.ingest.send(Job::Close { reply: tx }).await.map_err(|_| "the writer is gone".to_string())?;
        rx.await.map_err(|_| "the writer stopped without closing the store".to_string())?
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self.banned.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for peer in expired {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut to_dial = Vec::new();
        for (peer, b) in self.bootstrap.iter_mut() {
            if !connected.contains(peer) && b.next_try <= now {
                to_dial.push(b.addr.clone());
                b.next_try = now + b.backoff;
                b.backoff = (b.backoff * 2).min(Duration::from_secs(60));
            }
        }
        for addr in to_dial {
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
            }
        }
    }

    fn discover(&mut self) {
        let communities: Vec<String> = self
            .scopes
            .read()
            .map(|s| s.iter().filter_map(|s| topics::community_of_scope(s).map(str::to_owned)).collect())
            .unwrap_or_default();
        let kad = &mut self.swarm.behaviour_mut().kad;
        for c in communities {
            let key = community_key(&c);
            if let Err(e) = kad.start_providing(key.clone()) {
                tracing::debug!(community = %c, error = %e, "could not announce the community");
            }
            kad.get_providers(key);
        }
        if self.swarm.connected_peers().next().is_some() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_writer(&mut self, msg: ToSwarm) {
        match msg {
            ToSwarm::Verdict { msg_id, peer, acceptance, code } => {
                let reject = matches!(acceptance, MessageAcceptance::Reject);
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&msg_id, &peer, acceptance);
                if reject {
                    if let Some(code) = code {
                        let _ = self.events.send(NodeEvent::Rejected { peer, code });
                    }
                    self.strike(peer);
                    // Gossipsub drops every message of a peer under its graylist threshold unread, so
                    // they never reach the strikes above: a flooder of invalid records would stay
                    // connected forever, one message read each time its score decays back above the
                    // threshold. Graylisted is proof enough (7 or more invalid records in a short time).
                    let graylist = network::peer_score_params().1.graylist_threshold;
                    let score = self.swarm.behaviour().gossipsub.peer_score(&peer);
                    if score.is_some_and(|s| s < graylist) && !self.banned.contains_key(&peer) {
                        self.ban(peer);
                    }
                }
            }
            ToSwarm::Publish { scope, bytes } => self.publish_paced(scope, bytes),
            ToSwarm::Changed => {
                let _ = self.to_sync.try_send(ToSync::Changed);
            }
        }
    }

    /// Listens through the relays we are connected to, up to `MAX_RELAYS` (called once we know we
    /// are behind NAT, and when a relay is identified after that).
    fn listen_through_relays(&mut self) {
        let routes: Vec<(PeerId, Multiaddr)> =
            self.relay_routes.iter().filter(|(p, _)| !self.relays.contains(p)).map(|(p, a)| (*p, a.clone())).collect();
        for (relay, addr) in routes {
            if self.relays.len() >= MAX_RELAYS {
                break;
            }
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(_) => {
                    self.relays.insert(relay);
                    tracing::info!(%circuit, "listening through a relay");
                }
                Err(e) => tracing::debug!(%circuit, error = %e, "could not listen through relay"),
            }
        }
    }

    /// Makes a peer reachable by PeerId through the relays we are connected to: a circuit address
    /// through each is added to the swarm's addresses of the peer, so the next dial (a deal
    /// message, a provider found in the DHT) tries them beside any direct address. Neighbours behind
    /// NAT usually listen through the same relay, the public node of their community; a wrong guess
    /// costs one failed circuit request.
    fn route_through_relays(&mut self, peer: PeerId) {
        let circuits: Vec<Multiaddr> = self
            .relay_routes
            .iter()
            .filter(|(relay, _)| **relay != peer)
            .map(|(relay, addr)| addr.clone().with(Protocol::P2p(*relay)).with(Protocol::P2pCircuit))
            .collect();
        for circuit in circuits {
            self.swarm.add_peer_address(peer, circuit);
        }
    }

    fn strike(&mut self, peer: PeerId) {
        if self.strikes.strike(&peer, Instant::now()) {
            self.ban(peer);
        }
    }

    /// Disconnects a peer for abuse and refuses it for [`BAN`].
    fn ban(&mut self, peer: PeerId) {
        tracing::info!(%peer, "disconnecting a peer that keeps sending invalid data");
        self.metrics.disconnected_for_abuse();
        self.banned.insert(peer, Instant::now() + BAN);
        self.strikes.forget(&peer);
        // Blocking also closes its connections, and denies new ones until the ban ends.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn publish(&mut self, scope: &str, bytes: Vec<u8>) {
        let topic = topics::topic(scope);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        match self.metrics.publishing(|| gossipsub.publish(topic.clone(), bytes.clone())) {
            Ok(_) => self.metrics.published(),
            Err(PublishError::Duplicate) => {}
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::AllQueuesFull(_)) => {
                // Nobody to send it to yet: keep it for when a peer subscribes. Catch-up would bring
                // it too, but later.
                let q = self.pending_publish.entry(topic.hash()).or_default();
                if q.len() >= self.config.limits.max_pending_publish {
                    q.pop_front();
                }
                q.push_back(bytes);
            }
            Err(e) => tracing::warn!(%scope, error = %e, "could not publish"),
        }
    }

    /// Publishes a record of this node's, within [`own_gossip_pace`]: every peer counts the records
    /// it receives from their author's own node against the per-author rate, and penalises a node
    /// that exceeds it (`own_rate_exceeded`). Beyond the pace, records wait in `paced` (bounded by
    /// `max_pending_publish`, oldest dropped: catch-up brings those) and leave, in order, as soon
    /// as the pace allows (the event loop's pace timer).
    fn publish_paced(&mut self, scope: String, bytes: Vec<u8>) {
        let now = Instant::now();
        if self.paced.is_empty() && self.own_pace.check(&(), 1.0, now) {
            self.publish(&scope, bytes);
            return;
        }
        if self.paced.len() >= self.config.limits.max_pending_publish {
            self.paced.pop_front();
            tracing::debug!("own gossip over its pace and the queue full: the oldest left to catch-up");
        }
        let first = self.paced.is_empty();
        self.paced.push_back((scope, bytes));
        if first {
            self.arm_pace(now);
        }
    }

    /// Publishes what waited for the pace, as much as it allows now, and arms the pace timer for
    /// the rest.
    fn publish_waiting(&mut self) {
        let now = Instant::now();
        while !self.paced.is_empty() && self.own_pace.check(&(), 1.0, now) {
            if let Some((scope, bytes)) = self.paced.pop_front() {
                self.publish(&scope, bytes);
            }
        }
        if !self.paced.is_empty() {
            self.arm_pace(now);
        }
    }

    /// The pace timer fires when the next token is there (a millisecond late, so that rounding
    /// never finds it a hair short and fires again at once).
    fn arm_pace(&mut self, now: Instant) {
        let wait = self.own_pace.ready_in(&(), 1.0, now) + Duration::from_millis(1);
        self.pace_due = Some(now + wait);
    }

    fn flush_pending(&mut self, topic: &TopicHash) {
        let Some(queue) = self.pending_publish.remove(topic) else { return };
        let scope = topic.as_str().strip_prefix("troc/v1/").unwrap_or_default().to_owned();
        // Through the pace again: a node alone for a while can have hundreds waiting, and sending
        // them at once would get it struck by its first peer (`own_rate_exceeded`).
        for bytes in queue {
            self.publish_paced(scope.clone(), bytes);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let opts = DialOpts::from(addr.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("could not dial {addr}: {e}")));
                    }
                }
            }
            Command::AddBootstrap { addr, reply } => match peer_of(&addr) {
                Some(peer) if peer == *self.swarm.local_peer_id() => {
                    let _ = reply.send(Err(format!("{addr} is this node itself")));
                }
                Some(peer) => {
                    if self.bootstrap.len() >= MAX_BOOTSTRAP_PEERS && !self.bootstrap.contains_key(&peer) {
                        let _ = reply.send(Err(format!("already keeping {MAX_BOOTSTRAP_PEERS} peers connected")));
                    } else {
                        self.swarm.behaviour_mut().kad.add_address(&peer, strip_p2p(&addr));
                        self.bootstrap.insert(
                            peer,
                            Bootstrap { addr, next_try: Instant::now(), backoff: Duration::from_secs(1) },
                        );
                        let _ = reply.send(Ok(peer));
                    }
                }
                None => {
                    let _ = reply.send(Err(format!("{addr} does not end in /p2p/<peer id>")));
                }
            },
            Command::Peers { reply } => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                let g = &self.swarm.behaviour().gossipsub;
                let infos = peers
                    .into_iter()
                    .map(|p| {
                        // Direct connections first: a peer is relayed only while no direct
                        // connection to it is open.
                        let mut addrs: Vec<&Multiaddr> =
                            self.remotes.get(&p).map(|c| c.iter().map(|r| &r.address).collect()).unwrap_or_default();
                        addrs.sort_by_key(|a| is_relayed(a));
                        PeerInfo {
                            peer_id: p,
                            addresses: addrs.iter().map(|a| a.to_string()).collect(),
                            agent: self.agents.get(&p).cloned(),
                            score: g.peer_score(&p),
                            relayed: !addrs.is_empty() && addrs.iter().all(|a| is_relayed(a)),
                        }
                    })
                    .collect();
                let _ = reply.send(infos);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Follow { community, reply } => {
                let scope = topics::scope_name(Some(&community));
                let result = match troc_protocol::types::check_community(&community) {
                    Ok(()) => {
                        subscribe(&mut self.swarm, &scope);
                        if let Ok(mut s) = self.scopes.write()
                            && !s.contains(&scope)
                        {
                            s.push(scope);
                        }
                        self.discover();
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(result);
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::GossipRaw { scope, bytes, reply } => {
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                let result = self
                    .metrics
                    .publishing(|| gossipsub.publish(topics::topic(&scope), bytes))
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            Command::SendSync { peer, request, reply } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.sync_out.insert(id, reply);
            }
            Command::SendDeal { peer, request, reply } => {
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err("a deal message to ourselves".into()));
                } else {
                    if !self.swarm.is_connected(&peer) {
                        self.route_through_relays(peer);
                    }
                    let id = self.swarm.behaviour_mut().deal.send_request(&peer, request);
                    self.deal_out.insert(id, reply);
                }
            }
            Command::RespondDeal { channel, response } => {
                if let Some(ch) = self.deal_in.remove(&channel) {
                    let _ = self.swarm.behaviour_mut().deal.send_response(ch, response);
                }
            }
            Command::Strike { peer, count } => {
                for _ in 0..count {
                    if !self.swarm.is_connected(&peer) {
                        break;
                    }
                    self.strike(peer);
                }
            }
            Command::RespondSync { channel, response } => {
                if let Some(ch) = self.sync_in.remove(&channel) {
                    let _ = self.swarm.behaviour_mut().sync.send_response(ch, response);
                }
            }
            Command::Shutdown { .. } => {} // handled in run()
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                let _ = self.events.send(NodeEvent::Listening { address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.listen_addrs.retain(|a| a != &address),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, endpoint, .. } => {
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if self.banned.contains_key(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let Some(b) = self.bootstrap.get_mut(&peer_id) {
                    b.backoff = Duration::from_secs(1);
                }
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, address.clone());
                }
                let remote = endpoint.get_remote_address().clone();
                if !is_relayed(&remote) && num_established.get() > 1 {
                    tracing::info!(peer = %peer_id, address = %remote, "direct connection to a peer already connected");
                }
                let dialer = endpoint.is_dialer();
                self.remotes.entry(peer_id).or_default().push(Remote { id: connection_id, address: remote, dialer });
                if num_established.get() == 1 {
                    let _ = self.events.send(NodeEvent::PeerConnected { peer: peer_id });
                    let _ = self.to_sync.try_send(ToSync::PeerConnected { peer: peer_id });
                    let _ = self.to_deals.try_send(ToDeals::PeerConnected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if num_established > 0 {
                    if let Some(conns) = self.remotes.get_mut(&peer_id) {
                        conns.retain(|r| r.id != connection_id);
                    }
                    return;
                }
                self.agents.remove(&peer_id);
                self.remotes.remove(&peer_id);
                self.relays.remove(&peer_id);
                self.relay_routes.remove(&peer_id);
                let _ = self.events.send(NodeEvent::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                if let Some(reply) = self.dials.remove(&connection_id) {
                    // Refused by our own limits (connections per peer) while the peer is connected:
                    // what the caller asked for, a connection to that peer, is there. (The NAT test
                    // met it: a deal retry had reached the peer through the relay and hole punched,
                    // two connections, just before `troc connect` asked for a third.)
                    let result = match (&error, peer_id) {
                        (DialError::Denied { .. }, Some(peer)) if self.swarm.is_connected(&peer) => Ok(peer),
                        // Its `Display` is only "Dial error": the cause says which limit.
                        (DialError::Denied { cause }, _) => Err(format!("refused by this node: {cause}")),
                        _ => Err(error.to_string()),
                    };
                    let _ = reply.send(result);
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                self.metrics.gossip_delivered();
                let g = &mut self.swarm.behaviour_mut().gossipsub;
                if !self.peer_rate.check(&propagation_source, 1.0, Instant::now()) {
                    self.metrics.reject(Source::Gossip, "peer_rate_limited");
                    g.report_message_validation_result(&message_id, &propagation_source, MessageAcceptance::Ignore);
                    self.strike(propagation_source);
                    return;
                }
                let job = Job::Records {
                    origin: Box::new(Origin::Gossip {
                        peer: propagation_source,
                        msg_id: message_id.clone(),
                        topic: message.topic,
                        publisher: message.source,
                    }),
                    items: vec![message.data],
                    reply: None,
                };
                if self.ingest.try_send(job).is_err() {
                    self.metrics.reject(Source::Gossip, "queue_full");
                    g.report_message_validation_result(&message_id, &propagation_source, MessageAcceptance::Ignore);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { topic, .. }) => self.flush_pending(&topic),
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let id = self.next_channel;
                    self.next_channel += 1;
                    if self.sync_in.len() >= 256 {
                        let _ = self.swarm.behaviour_mut().sync.send_response(
                            channel,
                            SyncResponse::Refused {
                                code: "busy".into(),
                                message: "too many requests in flight".into(),
                            },
                        );
                        return;
                    }
                    self.sync_in.insert(id, channel);
                    if self.to_sync.try_send(ToSync::Inbound { peer, request, channel: id }).is_err()
                        && let Some(ch) = self.sync_in.remove(&id)
                    {
                        {
                            let _ = self.swarm.behaviour_mut().sync.send_response(
                                ch,
                                SyncResponse::Refused { code: "busy".into(), message: "catch-up queue full".into() },
                            );
                        }
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.sync_out.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            BehaviourEvent::Sync(request_response::Event::OutboundFailure { request_id, error, .. }) => {
                if let Some(reply) = self.sync_out.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure { peer, error, .. }) => {
                tracing::debug!(%peer, %error, "inbound catch-up request failed");
            }
            BehaviourEvent::Deal(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let refuse = |code: &str, message: &str| DealResponse {
                        msg: request.msg,
                        answer: DealAnswer::Refused { code: code.into(), message: message.into() },
                    };
                    if !self.deal_rate.check(&peer, 1.0, Instant::now()) {
                        self.metrics.reject(Source::Deal, "deal_rate_limited");
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .deal
                            .send_response(channel, refuse("deal_rate_limited", "too many deal messages"));
                        return;
                    }
                    if self.deal_in.len() >= MAX_DEAL_INBOUND {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .deal
                            .send_response(channel, refuse("busy", "too many in flight"));
                        return;
                    }
                    let id = self.next_channel;
                    self.next_channel += 1;
                    let busy = refuse("busy", "the deal service is busy");
                    self.deal_in.insert(id, channel);
                    if self.to_deals.try_send(ToDeals::Inbound { peer, request, channel: id }).is_err()
                        && let Some(ch) = self.deal_in.remove(&id)
                    {
                        let _ = self.swarm.behaviour_mut().deal.send_response(ch, busy);
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.deal_out.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            BehaviourEvent::Deal(request_response::Event::OutboundFailure { request_id, error, .. }) => {
                if let Some(reply) = self.deal_out.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            BehaviourEvent::Deal(request_response::Event::InboundFailure { peer, error, .. }) => {
                if matches!(error, request_response::InboundFailure::UnsupportedProtocols) {
                    return;
                }
                tracing::debug!(%peer, %error, "inbound deal request failed");
                if !matches!(
                    error,
                    request_response::InboundFailure::Timeout | request_response::InboundFailure::ConnectionClosed
                ) {
                    self.metrics.reject(Source::Deal, "bad_deal_message");
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.agents.insert(peer_id, info.agent_version.clone());
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in info.listen_addrs.iter().filter(|a| !is_unroutable(a)) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    }
                }
                let is_relay = info.protocols.iter().any(|p| p.as_ref() == RELAY_HOP);
                if is_relay && (self.relay_routes.len() < MAX_RELAY_ROUTES || self.relay_routes.contains_key(&peer_id))
                {
                    // The address we reached the relay at is known to work from here; its own
                    // listen addresses may be loopback or private ones of its network.
                    let dialed = self
                        .remotes
                        .get(&peer_id)
                        .and_then(|c| c.iter().find(|r| r.dialer && !is_relayed(&r.address)))
                        .map(|r| strip_p2p(&r.address));
                    let addr = dialed.or_else(|| info.listen_addrs.iter().find(|a| !is_unroutable(a)).cloned());
                    if let Some(addr) = addr {
                        self.relay_routes.insert(peer_id, addr);
                    }
                }
                if is_relay && self.nat_private {
                    self.listen_through_relays();
                }
            }
            BehaviourEvent::Autonat(autonat::v1::Event::StatusChanged { new, .. }) => {
                tracing::info!(status = ?new, "reachability");
                match new {
                    autonat::v1::NatStatus::Public(_) => {
                        self.nat_private = false;
                        self.swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
                    }
                    autonat::v1::NatStatus::Private => {
                        self.nat_private = true;
                        // The relays were met (identified) before autonat could tell: use them now
                        // rather than at their next identify, minutes later.
                        self.listen_through_relays();
                    }
                    autonat::v1::NatStatus::Unknown => {}
                }
            }
            BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punch succeeded: direct connection"),
                Err(e) => tracing::info!(peer = %remote_peer_id, error = %e, "hole punch failed"),
            },
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders { providers, .. })),
                ..
            }) => {
                let local = *self.swarm.local_peer_id();
                let mut dialed = 0;
                for p in providers {
                    if p != local && !self.swarm.is_connected(&p) && !self.banned.contains_key(&p) && dialed < 8 {
                        dialed += 1;
                        self.route_through_relays(p);
                        let _ = self.swarm.dial(p);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) && !self.banned.contains_key(&peer) {
                        let _ = self.swarm.dial(addr.with(Protocol::P2p(peer)));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Loopback and unspecified addresses are not worth telling the DHT about, except that tests and
/// single-machine demos run entirely on loopback, so only the unspecified address is filtered.
fn is_unroutable(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
