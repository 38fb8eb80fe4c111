//! The libp2p side of a node: which protocols it speaks and how the swarm is built.
//!
//! Transports: TCP + noise + yamux, QUIC, DNS, and the relay client (for peers behind NAT).
//! Protocols: gossipsub (records, with our own validation of every message), identify, ping,
//! Kademlia under troc's own protocol name (peer discovery; provider records per community), mDNS
//! (optional), autonat (reachability), relay server (optional) + dcutr (hole punching),
//! request-response for catch-up and for direct deal messages, and connection limits.
//!
//! Only the swarm task in `node.rs` touches the `Swarm` this module builds.

use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds, ValidationMode};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::{self, ProtocolSupport, cbor::codec as cbor};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, allow_block_list, autonat, connection_limits, dcutr, identify, mdns, noise,
    ping, relay, tcp, yamux,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::NodeConfig;
use crate::deals::{DealRequest, DealResponse, MAX_DEAL_REQUEST, MAX_DEAL_RESPONSE};
use crate::metrics::{Metrics, Source};
use crate::sync::{SyncRequest, SyncResponse};

/// The agent and protocol version announced by identify.
pub const PROTOCOL_VERSION: &str = "/troc/1.0.0";
/// Kademlia under our own name, so troc nodes never join the IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/troc/kad/1.0.0");
/// Catch-up.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new(crate::sync::PROTOCOL);
/// Direct deal messages.
pub const DEAL_PROTOCOL: StreamProtocol = StreamProtocol::new(crate::deals::PROTOCOL);
/// Largest catch-up request and response.
pub const MAX_SYNC_REQUEST: u64 = 1024 * 1024;
pub const MAX_SYNC_RESPONSE: u64 = 2 * 1024 * 1024;

/// Every protocol a troc node speaks.
#[allow(missing_debug_implementations)] // several libp2p behaviours do not implement Debug
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Peers banned for abuse: their connections are denied as they are established.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    /// The per-peer limit: direct connections, and one relayed connection only while there is no
    /// other (`crate::paths`).
    pub paths: crate::paths::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::v1::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<Counted<cbor::Codec<SyncRequest, SyncResponse>>>,
    /// Direct deal messages between the two parties of a deal (`deals`).
    pub deal: request_response::Behaviour<Counted<cbor::Codec<DealRequest, DealResponse>>>,
}

/// A request-response codec that counts the inbound requests that do not decode (not CBOR, not
/// the message type, over the size limit). request-response drops such a request with only a debug
/// log and no event, so without this a peer could send garbage that no counter sees.
#[derive(Debug, Clone)]
pub struct Counted<C> {
    inner: C,
    metrics: Metrics,
    source: Source,
    code: &'static str,
}

impl<C> request_response::Codec for Counted<C>
where
    C: request_response::Codec + Send,
    C::Protocol: Sync,
{
    type Protocol = C::Protocol;
    type Request = C::Request;
    type Response = C::Response;

    async fn read_request<T>(&mut self, protocol: &Self::Protocol, io: &mut T) -> std::io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let request = self.inner.read_request(protocol, io).await;
        if request.is_err() {
            self.metrics.reject(self.source, self.code);
        }
        request
    }

    async fn read_response<T>(&mut self, protocol: &Self::Protocol, io: &mut T) -> std::io::Result<Self::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.inner.read_response(protocol, io).await
    }

    async fn write_request<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
        req: Self::Request,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_request(protocol, io, req).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
        res: Self::Response,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_response(protocol, io, res).await
    }
}

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("could not set up the transport: {0}")]
    Transport(String),
    #[error("invalid gossipsub configuration: {0}")]
    Gossipsub(String),
    #[error("could not start mDNS")]
    Mdns(#[source] std::io::Error),
}

/// The gossipsub message id of a message: the record id (SHA-256 of the domain prefix and content)
/// when the data is a record, so duplicates are recognised whoever forwards them. For data that is
/// not a record, a hash of the data (it will be rejected by validation anyway). It runs for every
/// copy received, duplicates included, so it only hashes: no decoding, no key checks.
fn message_id(msg: &gossipsub::Message) -> MessageId {
    match troc_protocol::id_of_bytes(&msg.data) {
        Some(id) => MessageId::from(id.0.to_vec()),
        None => MessageId::from(Sha256::digest(&msg.data).to_vec()),
    }
}

/// Peer scoring for a quiet topic: the defaults punish mesh peers that deliver fewer than 20
/// messages, which on a neighbourhood's offers is every honest peer. Here only invalid messages and
/// protocol misbehaviour cost score; delivering first earns a little.
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(60),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        // The penalty is weight x (invalid count)^2, decaying slowly: 3 invalid records put a peer under
        // the gossip threshold (-10), 5 at the publish threshold (-50), 7 under the graylist (-80),
        // after which its messages are dropped unread. An honest peer with a skewed clock that
        // forwards one or two refused records loses little.
        invalid_message_deliveries_weight: -2.0,
        invalid_message_deliveries_decay: 0.99,
    }
}

pub fn peer_score_params() -> (PeerScoreParams, PeerScoreThresholds) {
    let params = PeerScoreParams {
        // Neighbours often share one public address (a building, a campus): do not punish that.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    (params, PeerScoreThresholds::default())
}

fn gossipsub(
    config: &NodeConfig,
    keypair: &libp2p::identity::Keypair,
    metrics: &Metrics,
) -> Result<gossipsub::Behaviour, BuildError> {
    // Gossipsub deduplicates before our validation sees anything, so the message id function, which
    // it calls for every copy that arrives, is where duplicates can be counted.
    let counter = metrics.clone();
    let gcfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.timing.gossip_heartbeat)
        .heartbeat_initial_delay(config.timing.gossip_heartbeat)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(move |msg| {
            counter.gossip_message_seen();
            message_id(msg)
        })
        .max_transmit_size(config.limits.max_gossip_bytes)
        // Keep validated records in the cache long enough for peers that ask after a heartbeat or two.
        .history_length(6)
        .history_gossip(3)
        .build()
        .map_err(|e| BuildError::Gossipsub(e.to_string()))?;
    let mut behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Signed(keypair.clone()), gcfg)
        .map_err(|e| BuildError::Gossipsub(e.to_owned()))?;
    let (params, thresholds) = peer_score_params();
    behaviour.with_peer_score(params, thresholds).map_err(BuildError::Gossipsub)?;
    Ok(behaviour)
}

/// Builds the swarm for `config`; gossipsub counts the messages it receives in `metrics`.
pub fn build_swarm(config: &NodeConfig, metrics: &Metrics) -> Result<Swarm<Behaviour>, BuildError> {
    let keypair = config.identity.to_libp2p_keypair();
    let peer_id = keypair.public().to_peer_id();
    let gossipsub = gossipsub(config, &keypair, metrics)?;
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id).map_err(BuildError::Mdns)?)
    } else {
        None
    };
    let limits = &config.limits;
    let connection_limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(limits.max_connections))
        .with_max_pending_incoming(Some(64));
    let parts = Parts {
        gossipsub,
        mdns,
        connection_limits,
        max_direct_per_peer: limits.max_connections_per_peer,
        request_timeout: config.timing.request_timeout,
        relay_server: config.relay_server,
        metrics: metrics.clone(),
    };
    let idle_timeout = config.timing.idle_timeout;
    let transport = |e: &dyn std::fmt::Display| BuildError::Transport(e.to_string());

    let builder = SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let swarm = match config.link_shaper.clone() {
        None => builder
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| transport(&e))?
            .with_quic()
            .with_dns()
            .map_err(|e| transport(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| transport(&e))?
            .with_behaviour(|key, relay_client| behaviour(parts, key, relay_client))
            .map_err(|e| transport(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
            .build(),
        // Tests and benchmarks: TCP whose connections go through the link shaper (`crate::link`).
        Some(shaper) => builder
            .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let noise = noise::Config::new(key)?;
                use libp2p::Transport as _;
                let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
                Ok(crate::link::FreshPorts(tcp)
                    .and_then(move |stream, endpoint| crate::link::shape(shaper.clone(), stream, endpoint))
                    .upgrade(libp2p::core::upgrade::Version::V1)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default()))
            })
            .map_err(|e| transport(&e))?
            .with_dns()
            .map_err(|e| transport(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| transport(&e))?
            .with_behaviour(|key, relay_client| behaviour(parts, key, relay_client))
            .map_err(|e| transport(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
            .build(),
    };
    Ok(swarm)
}

/// What [`behaviour`] needs besides the key and the relay client.
struct Parts {
    gossipsub: gossipsub::Behaviour,
    mdns: Option<mdns::tokio::Behaviour>,
    connection_limits: connection_limits::ConnectionLimits,
    max_direct_per_peer: u32,
    request_timeout: Duration,
    relay_server: bool,
    metrics: Metrics,
}

fn behaviour(parts: Parts, key: &libp2p::identity::Keypair, relay_client: relay::client::Behaviour) -> Behaviour {
    let Parts { gossipsub, mdns, connection_limits, max_direct_per_peer, request_timeout, relay_server, metrics } =
        parts;
    let local = key.public().to_peer_id();
    let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
    kad_cfg.set_query_timeout(Duration::from_secs(60));
    let kad = kad::Behaviour::with_config(local, MemoryStore::new(local), kad_cfg);
    let sync = request_response::Behaviour::with_codec(
        Counted {
            inner: cbor::Codec::default()
                .set_request_size_maximum(MAX_SYNC_REQUEST)
                .set_response_size_maximum(MAX_SYNC_RESPONSE),
            metrics: metrics.clone(),
            source: Source::Sync,
            code: "bad_sync_message",
        },
        [(SYNC_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(request_timeout).with_max_concurrent_streams(32),
    );
    let deal = request_response::Behaviour::with_codec(
        Counted {
            inner: cbor::Codec::default()
                .set_request_size_maximum(MAX_DEAL_REQUEST)
                .set_response_size_maximum(MAX_DEAL_RESPONSE),
            metrics,
            source: Source::Deal,
            code: "bad_deal_message",
        },
        [(DEAL_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(request_timeout).with_max_concurrent_streams(16),
    );
    Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(connection_limits),
        paths: crate::paths::Behaviour::new(max_direct_per_peer),
        relay_client,
        relay_server: Toggle::from(relay_server.then(|| relay::Behaviour::new(local, relay::Config::default()))),
        dcutr: dcutr::Behaviour::new(local),
        autonat: autonat::v1::Behaviour::new(local, autonat::v1::Config::default()),
        identify: identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.to_owned(), key.public())
                .with_agent_version(format!("troc/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        kad,
        mdns: Toggle::from(mdns),
        gossipsub,
        sync,
        deal,
    }
}
