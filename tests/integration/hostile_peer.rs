//! A hostile peer for tests: a libp2p swarm of its own (not a troc node) that speaks what a node
//! speaks, on the wire, without any of a node's checks, so it can send anything at all.
//!
//! - **Gossip.** It opens a gossipsub stream (`/meshsub/1.1.0`) to the node and writes RPC frames
//!   itself (hand-encoded protobuf, the length-prefixed framing gossipsub uses): a message may carry
//!   any bytes, on any topic, signed by any identity the test holds (so one connection can publish
//!   as many fresh authors, as a Sybil would), and whole frames can be arbitrary bytes. A real
//!   gossipsub behaviour would refuse to do most of this, and would sign every message with its own
//!   key only.
//! - **Catch-up and deals.** request-response `/troc/sync/2` and `/troc/deal/1` with the node's own
//!   CBOR messages (well-formed requests with hostile content), and raw streams on any protocol
//!   (bytes that are not CBOR at all, or too many of them).
//! - **Answering catch-up.** The node starts catch-up with every peer that connects; the hostile
//!   peer answers reconciliation honestly over the ids the test gives it, and answers fetches with
//!   whatever records the test gives it (for example records that were not asked for).
//!
//! The swarm runs on a task of its own; the test drives it through a bounded command channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
    NotifyHandler, SubstreamProtocol, SwarmEvent, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, Stream, StreamProtocol, Swarm, SwarmBuilder, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use troc_node::deals::{DealRequest, DealResponse};
use troc_node::sync::{self, Responder, SyncRequest, SyncResponse};
use troc_protocol::{Identity, RecordId};

/// The gossipsub protocol the hostile peer speaks (every node speaks it).
pub const MESHSUB: StreamProtocol = StreamProtocol::new("/meshsub/1.1.0");
/// What gossipsub signs: this prefix and the protobuf message without its signature and key.
const SIGNING_PREFIX: &[u8] = b"libp2p-pubsub:";
/// Longest answer read from a raw stream.
const MAX_RAW_ANSWER: u64 = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Gossipsub frames, hand-encoded (protobuf, `rpc.proto` of libp2p-gossipsub)

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited protobuf field.
fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(tag << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// One gossipsub message, signed by `signer` as its publisher: `from` is the signer's PeerId.
pub fn signed_message(signer: &Identity, topic: &str, data: &[u8], seqno: u64) -> Vec<u8> {
    let keypair = signer.to_libp2p_keypair();
    let from = keypair.public().to_peer_id().to_bytes();
    // Fields in tag order, as gossipsub (prost) encodes the message it verifies.
    let mut unsigned = Vec::new();
    field(1, &from, &mut unsigned);
    field(2, data, &mut unsigned);
    field(3, &seqno.to_be_bytes(), &mut unsigned);
    field(4, topic.as_bytes(), &mut unsigned);
    let mut to_sign = SIGNING_PREFIX.to_vec();
    to_sign.extend_from_slice(&unsigned);
    let signature = keypair.sign(&to_sign).expect("ed25519 signs");
    let mut message = unsigned;
    field(5, &signature, &mut message);
    message
}

/// An RPC carrying `subscribe` subscriptions and `messages` (each from [`signed_message`]).
pub fn rpc(subscribe: &[&str], messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for topic in subscribe {
        let mut sub = Vec::new();
        sub.extend_from_slice(&[0x08, 0x01]); // subscribe = true
        field(2, topic.as_bytes(), &mut sub);
        field(1, &sub, &mut out);
    }
    for m in messages {
        field(2, m, &mut out);
    }
    out
}

/// The frame of an RPC on the stream: its length as an unsigned varint, then the RPC.
pub fn frame(rpc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rpc.len() + 5);
    varint(rpc.len() as u64, &mut out);
    out.extend_from_slice(rpc);
    out
}

/// The gossip topic of a scope (`global`, `community/<slug>`), as the node names it.
pub fn topic(scope: &str) -> String {
    troc_node::topics::topic(scope).hash().into_string()
}

// ---------------------------------------------------------------------------------------------
// Raw streams: a behaviour that opens a stream on any protocol and accepts gossipsub streams

/// A request to open a stream, from the behaviour to a connection.
struct Open {
    protocol: StreamProtocol,
    reply: oneshot::Sender<Result<Stream, String>>,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open").field("protocol", &self.protocol).finish()
    }
}

/// Per connection: opens the streams asked for, and reads (and drops) what the node's gossipsub
/// sends us, so that its side never stalls on a full window.
#[derive(Default)]
struct RawHandler {
    requests: VecDeque<Open>,
}

impl ConnectionHandler for RawHandler {
    type FromBehaviour = Open;
    type ToBehaviour = std::convert::Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = oneshot::Sender<Result<Stream, String>>;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(MESHSUB), ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>> {
        match self.requests.pop_front() {
            Some(Open { protocol, reply }) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(protocol), reply)
                    .with_timeout(Duration::from_secs(10)),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, event: Open) {
        self.requests.push_back(event);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), Self::OutboundOpenInfo>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: mut stream, .. }) => {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol: stream, info }) => {
                let _ = info.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info, error }) => {
                let _ = info.send(Err(error.to_string()));
            }
            _ => {}
        }
    }
}

/// The behaviour side of [`RawHandler`].
#[derive(Default)]
struct RawStreams {
    out: VecDeque<(PeerId, Open)>,
    waker: Option<Waker>,
}

impl RawStreams {
    fn open(&mut self, peer: PeerId, protocol: StreamProtocol, reply: oneshot::Sender<Result<Stream, String>>) {
        self.out.push_back((peer, Open { protocol, reply }));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl NetworkBehaviour for RawStreams {
    type ConnectionHandler = RawHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(RawHandler::default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(RawHandler::default())
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.out.pop_front() {
            Some((peer_id, event)) => {
                Poll::Ready(ToSwarm::NotifyHandler { peer_id, handler: NotifyHandler::Any, event })
            }
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[derive(NetworkBehaviour)]
struct HostileBehaviour {
    raw: RawStreams,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    deal: request_response::cbor::Behaviour<DealRequest, DealResponse>,
}

// ---------------------------------------------------------------------------------------------
// The peer

/// How the hostile peer answers the node's catch-up requests.
#[derive(Debug, Default, Clone)]
pub struct Serving {
    /// The `(created_at, id)` items it claims to hold, in every scope.
    pub items: Vec<(u64, RecordId)>,
    /// The records it answers every fetch with (`None`: an honest "missing" for everything).
    pub fetch_answer: Option<Vec<Vec<u8>>>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Cmd {
    Dial(Multiaddr, Reply<PeerId>),
    Open(PeerId, StreamProtocol, Reply<Stream>),
    Sync(PeerId, SyncRequest, Reply<SyncResponse>),
    Deal(PeerId, DealRequest, Reply<DealResponse>),
    Connected(PeerId, oneshot::Sender<bool>),
}

/// A hostile peer, running until dropped.
pub struct HostilePeer {
    pub identity: Identity,
    pub peer_id: PeerId,
    commands: mpsc::Sender<Cmd>,
    /// The gossipsub stream to the node it attacked last.
    gossip: tokio::sync::Mutex<Option<Stream>>,
    seqno: std::sync::atomic::AtomicU64,
    pub serving: Arc<Mutex<Serving>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostilePeer {
    /// Starts a hostile peer with `identity` (not listening: it only dials).
    pub fn spawn(identity: Identity) -> HostilePeer {
        let keypair = identity.to_libp2p_keypair();
        let peer_id = keypair.public().to_peer_id();
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .expect("tcp transport")
            .with_behaviour(|_| HostileBehaviour {
                raw: RawStreams::default(),
                sync: rr(sync::PROTOCOL),
                deal: rr(troc_node::deals::PROTOCOL),
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build();
        let (commands, rx) = mpsc::channel(64);
        let serving = Arc::new(Mutex::new(Serving::default()));
        let task = tokio::spawn(run(swarm, rx, serving.clone()));
        HostilePeer {
            identity,
            peer_id,
            commands,
            gossip: tokio::sync::Mutex::new(None),
            seqno: std::sync::atomic::AtomicU64::new(1),
            serving,
            task,
        }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| "hostile swarm gone".to_string())?;
        rx.await.map_err(|_| "hostile swarm gone".to_string())?
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, String> {
        self.call(|r| Cmd::Dial(addr, r)).await
    }

    /// Dials the node at `addr` and opens a gossip stream to it, subscribed to `scopes`.
    pub async fn attack(&self, addr: Multiaddr, scopes: &[&str]) -> Result<PeerId, String> {
        let peer = self.dial(addr).await?;
        let stream = self.open(peer, MESHSUB).await?;
        *self.gossip.lock().await = Some(stream);
        let topics: Vec<String> = scopes.iter().map(|s| topic(s)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.send_rpc(&rpc(&topics, &[])).await?;
        Ok(peer)
    }

    /// Opens a stream on `protocol` to a connected peer.
    pub async fn open(&self, peer: PeerId, protocol: StreamProtocol) -> Result<Stream, String> {
        self.call(|r| Cmd::Open(peer, protocol, r)).await
    }

    pub async fn is_connected(&self, peer: PeerId) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Cmd::Connected(peer, tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Writes one RPC on the gossip stream (framed).
    pub async fn send_rpc(&self, rpc: &[u8]) -> Result<(), String> {
        self.send_frame(&frame(rpc)).await
    }

    /// Writes bytes on the gossip stream as they are (a frame, several, or garbage).
    pub async fn send_frame(&self, bytes: &[u8]) -> Result<(), String> {
        let mut guard = self.gossip.lock().await;
        let stream = guard.as_mut().ok_or("no gossip stream: attack a node first")?;
        stream.write_all(bytes).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())
    }

    fn next_seqno(&self) -> u64 {
        self.seqno.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes `data` on a scope's topic as itself.
    pub async fn gossip(&self, scope: &str, data: &[u8]) -> Result<(), String> {
        let m = signed_message(&self.identity, &topic(scope), data, self.next_seqno());
        self.send_rpc(&rpc(&[], &[m])).await
    }

    /// Publishes `data` on a scope's topic as `signer` (who need not be this peer).
    pub async fn gossip_as(&self, signer: &Identity, scope: &str, data: &[u8]) -> Result<(), String> {
        let m = signed_message(signer, &topic(scope), data, self.next_seqno());
        self.send_rpc(&rpc(&[], &[m])).await
    }

    /// A catch-up request, with the node's own message types.
    pub async fn sync(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, String> {
        self.call(|r| Cmd::Sync(peer, request, r)).await
    }

    /// A direct deal request, with the node's own message types.
    pub async fn deal(&self, peer: PeerId, request: DealRequest) -> Result<DealResponse, String> {
        self.call(|r| Cmd::Deal(peer, request, r)).await
    }

    /// Opens a stream on `protocol`, writes `bytes`, closes its side and reads the answer (at most
    /// 64 KiB): what request-response does, with bytes that need not be a valid request.
    pub async fn raw_request(&self, peer: PeerId, protocol: StreamProtocol, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut stream = self.open(peer, protocol).await?;
        stream.write_all(bytes).await.map_err(|e| e.to_string())?;
        stream.close().await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        (&mut stream).take(MAX_RAW_ANSWER).read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        Ok(answer)
    }
}

/// A request-response behaviour with the node's CBOR messages, whose size limits are larger than the
/// node's, so the hostile peer can send what the node must refuse.
fn rr<Req, Resp>(proto: &'static str) -> request_response::cbor::Behaviour<Req, Resp>
where
    Req: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    request_response::cbor::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(16 * 1024 * 1024)
            .set_response_size_maximum(16 * 1024 * 1024),
        [(StreamProtocol::new(proto), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
    )
}

/// How the hostile peer answers a catch-up request of the node.
fn answer_sync(serving: &Serving, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Reconcile { msg, .. } => {
            let responder = Responder::new(serving.items.clone()).expect("responder");
            match sync::respond(&responder, &msg) {
                Ok(msg) => SyncResponse::Reconcile { msg },
                Err(e) => e.to_refusal(),
            }
        }
        SyncRequest::Fetch { prefixes, .. } => match &serving.fetch_answer {
            Some(records) => SyncResponse::Records { records: records.clone(), missing: Vec::new() },
            None => SyncResponse::Records { records: Vec::new(), missing: prefixes },
        },
        SyncRequest::Push { .. } => SyncResponse::Pushed { accepted: 0 },
    }
}

async fn run(mut swarm: Swarm<HostileBehaviour>, mut rx: mpsc::Receiver<Cmd>, serving: Arc<Mutex<Serving>>) {
    let mut dials: std::collections::HashMap<ConnectionId, Reply<PeerId>> = Default::default();
    let mut syncs: std::collections::HashMap<OutboundRequestId, Reply<SyncResponse>> = Default::default();
    let mut deals: std::collections::HashMap<OutboundRequestId, Reply<DealResponse>> = Default::default();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Dial(addr, reply)) => {
                    let opts = libp2p::swarm::dial_opts::DialOpts::from(addr);
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => { dials.insert(id, reply); }
                        Err(e) => { let _ = reply.send(Err(e.to_string())); }
                    }
                }
                Some(Cmd::Open(peer, protocol, reply)) => {
                    if swarm.is_connected(&peer) {
                        swarm.behaviour_mut().raw.open(peer, protocol, reply);
                    } else {
                        let _ = reply.send(Err("not connected".into()));
                    }
                }
                Some(Cmd::Sync(peer, request, reply)) => {
                    let id = swarm.behaviour_mut().sync.send_request(&peer, request);
                    syncs.insert(id, reply);
                }
                Some(Cmd::Deal(peer, request, reply)) => {
                    let id = swarm.behaviour_mut().deal.send_request(&peer, request);
                    deals.insert(id, reply);
                }
                Some(Cmd::Connected(peer, reply)) => { let _ = reply.send(swarm.is_connected(&peer)); }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                    if let Some(r) = dials.remove(&connection_id) { let _ = r.send(Ok(peer_id)); }
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(r) = dials.remove(&connection_id) { let _ = r.send(Err(error.to_string())); }
                }
                SwarmEvent::Behaviour(HostileBehaviourEvent::Sync(e)) => match e {
                    request_response::Event::Message { message, .. } => match message {
                        request_response::Message::Request { request, channel, .. } => {
                            let answer = answer_sync(&serving.lock().expect("serving").clone(), request);
                            let _ = swarm.behaviour_mut().sync.send_response(channel, answer);
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some(r) = syncs.remove(&request_id) { let _ = r.send(Ok(response)); }
                        }
                    },
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(r) = syncs.remove(&request_id) { let _ = r.send(Err(error.to_string())); }
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(HostileBehaviourEvent::Deal(e)) => match e {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response }, ..
                    } => {
                        if let Some(r) = deals.remove(&request_id) { let _ = r.send(Ok(response)); }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(r) = deals.remove(&request_id) { let _ = r.send(Err(error.to_string())); }
                    }
                    _ => {}
                },
                _ => {}
            },
        }
    }
}
