//! The catch-up task: reconciles this node's scopes with its peers and fetches what it lacks.
//!
//! When a peer connects, on every `sync_interval` (with one peer picked in turn), and on demand
//! (`NodeHandle::sync_now`), the driver runs one session per shared scope:
//! reconcile (negentropy rounds, `sync.rs`) → `Fetch` what we need, in chunks, through the ingest
//! path like any other record → `Push` what the peer needs. It also answers the same requests from
//! peers. Requests travel through the swarm task (`Command::SendSync` / `Command::RespondSync`).
//!
//! Bounds: at most `max_sync_sessions` sessions served at once (further requests are refused with
//! `busy`), ids and bytes per message as in `sync.rs`, and a per-scope cache of the responder's set
//! that is rebuilt only when the store changed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use troc_protocol::RecordId;

use crate::config::Limits;
use crate::events::NodeEvent;
use crate::ingest::{ItemResult, Job, Origin};
use crate::metrics::{Metrics, Source};
use crate::node::Command;
use crate::store::{Scope, Store};
use crate::sync::{self, Reconciler, Responder, Step, SyncRequest, SyncResponse};
use crate::{now_secs, topics};

/// Messages to the sync task.
#[derive(Debug)]
pub(crate) enum ToSync {
    PeerConnected {
        peer: PeerId,
    },
    Inbound {
        peer: PeerId,
        request: SyncRequest,
        channel: u64,
    },
    SyncNow {
        reply: oneshot::Sender<SyncSummary>,
    },
    /// The store changed: cached responder sets are stale.
    Changed,
}

/// What a round of catch-up achieved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncSummary {
    pub peers: usize,
    pub sessions: usize,
    pub fetched: usize,
    pub stored: usize,
    pub pushed: usize,
    pub failures: Vec<String>,
}

/// Responders per scope, with the store generation they were built at.
type ResponderCache = HashMap<String, (u64, Arc<Responder>)>;

/// Shared by the driver's sessions.
#[derive(Clone)]
struct Ctx {
    commands: mpsc::Sender<Command>,
    ingest: mpsc::Sender<Job>,
    store: Store,
    metrics: Metrics,
    events: broadcast::Sender<NodeEvent>,
    scopes: Arc<RwLock<Vec<String>>>,
    cache: Arc<RwLock<ResponderCache>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    serving: Arc<Semaphore>,
    /// Permits of the store reads running on the blocking pool (see [`blocking`]).
    blocking: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

pub(crate) struct SyncDriver {
    ctx: Ctx,
    interval: Duration,
    rx: mpsc::Receiver<ToSync>,
    shutdown: watch::Receiver<bool>,
}

impl SyncDriver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        ingest: mpsc::Sender<Job>,
        store: Store,
        metrics: Metrics,
        events: broadcast::Sender<NodeEvent>,
        scopes: Arc<RwLock<Vec<String>>>,
        limits: Limits,
        interval: Duration,
        rx: mpsc::Receiver<ToSync>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let ctx = Ctx {
            commands,
            ingest,
            store,
            metrics,
            events,
            scopes,
            cache: Arc::default(),
            generation: Arc::default(),
            serving: Arc::new(Semaphore::new(limits.max_sync_sessions)),
            running: Arc::new(Semaphore::new(limits.max_sync_sessions)),
            blocking: Arc::new(Semaphore::new(MAX_BLOCKING as usize)),
        };
        SyncDriver { ctx, interval, rx, shutdown }
    }

    /// Runs until shutdown. Every session runs in `tasks`, so that when this returns no task holds
    /// the store any more.
    pub(crate) async fn run(mut self) {
        let mut tasks = JoinSet::new();
        self.serve_until_shutdown(&mut tasks).await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Wait for store reads still running on the blocking pool, then close the gate.
        if let Ok(all) = self.ctx.blocking.acquire_many(MAX_BLOCKING).await {
            all.forget();
        }
        self.ctx.blocking.close();
    }

    async fn serve_until_shutdown(&mut self, tasks: &mut JoinSet<()>) {
        let mut tick = crate::config::spread_interval(self.interval);
        let mut turn = 0usize;
        loop {
            // Reap finished sessions so the set stays small.
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = self.shutdown.changed() => return,
                msg = self.rx.recv() => match msg {
                    None => return,
                    Some(ToSync::Changed) => {
                        self.ctx.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(ToSync::PeerConnected { peer }) => {
                        let ctx = self.ctx.clone();
                        tasks.spawn(async move {
                            let _ = sync_with(&ctx, peer).await;
                        });
                    }
                    Some(ToSync::Inbound { peer, request, channel }) => {
                        let ctx = self.ctx.clone();
                        match ctx.serving.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tasks.spawn(async move {
                                    let response = serve(&ctx, peer, request).await;
                                    let _ = ctx.commands.send(Command::RespondSync { channel, response }).await;
                                    drop(permit);
                                });
                            }
                            Err(_) => {
                                let response = SyncResponse::Refused { code: "busy".into(), message: "too many catch-up sessions".into() };
                                let _ = ctx.commands.send(Command::RespondSync { channel, response }).await;
                            }
                        }
                    }
                    Some(ToSync::SyncNow { reply }) => {
                        let ctx = self.ctx.clone();
                        tasks.spawn(async move {
                            let mut total = SyncSummary::default();
                            for peer in connected(&ctx).await {
                                total.peers += 1;
                                let s = sync_with(&ctx, peer).await;
                                total.sessions += s.sessions;
                                total.fetched += s.fetched;
                                total.stored += s.stored;
                                total.pushed += s.pushed;
                                total.failures.extend(s.failures);
                            }
                            let _ = reply.send(total);
                        });
                    }
                },
                _ = tick.tick() => {
                    let peers = connected(&self.ctx).await;
                    if !peers.is_empty() {
                        let peer = peers[turn % peers.len()];
                        turn = turn.wrapping_add(1);
                        let ctx = self.ctx.clone();
                        tasks.spawn(async move {
                            let _ = sync_with(&ctx, peer).await;
                        });
                    }
                }
            }
        }
    }
}

async fn connected(ctx: &Ctx) -> Vec<libp2p::PeerId> {
    let (tx, rx) = oneshot::channel();
    if ctx.commands.send(Command::Peers { reply: tx }).await.is_err() {
        return Vec::new();
    }
    rx.await.map(|v| v.into_iter().map(|p| p.peer_id).collect()).unwrap_or_default()
}

fn scope_of_name(name: &str) -> Scope {
    match topics::community_of_scope(name) {
        Some(c) => Scope::Community(c.to_owned()),
        None => Scope::Global,
    }
}

/// Most store reads running on the blocking pool at once.
const MAX_BLOCKING: u32 = 64;

/// Runs a store read on the blocking pool. An aborted session cannot stop a blocking closure, which
/// would keep its `Store` (and sled's file lock) alive after shutdown; so each closure holds a
/// permit, and the driver takes all the permits back before it ends.
async fn blocking<T: Send + 'static>(ctx: &Ctx, f: impl FnOnce(Store) -> T + Send + 'static) -> Result<T, String> {
    let permit = ctx.blocking.clone().acquire_owned().await.map_err(|_| "node shut down".to_string())?;
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        let out = f(store);
        drop(permit);
        out
    })
    .await
    .map_err(|e| e.to_string())
}

async fn items_of(ctx: &Ctx, scope: &str) -> Result<Vec<(u64, RecordId)>, String> {
    let scope = scope_of_name(scope);
    blocking(ctx, move |store| store.sync_items(&scope, now_secs())).await?.map_err(|e| e.to_string())
}

async fn request(ctx: &Ctx, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, String> {
    let (tx, rx) = oneshot::channel();
    ctx.commands
        .send(Command::SendSync { peer, request, reply: tx })
        .await
        .map_err(|_| "node shut down".to_string())?;
    let response = rx.await.map_err(|_| "node shut down".to_string())??;
    // Check the response's bounds before anything uses it.
    if let Err(e) = sync::validate_response(&response) {
        ctx.metrics.reject(Source::Sync, "bad_sync_message");
        return Err(format!("invalid response: {e}"));
    }
    Ok(response)
}

/// Runs a session for every scope we follow with `peer`.
async fn sync_with(ctx: &Ctx, peer: PeerId) -> SyncSummary {
    let mut summary = SyncSummary { peers: 1, ..SyncSummary::default() };
    let Ok(_permit) = ctx.running.clone().acquire_owned().await else { return summary };
    let scopes = ctx.scopes.read().map(|s| s.clone()).unwrap_or_default();
    for scope in scopes {
        match session(ctx, peer, &scope).await {
            Ok((fetched, stored, pushed)) => {
                summary.sessions += 1;
                summary.fetched += fetched;
                summary.stored += stored;
                summary.pushed += pushed;
                let _ = ctx.events.send(NodeEvent::SyncDone { peer, scope, fetched, pushed });
            }
            Err(e) => {
                tracing::debug!(%peer, %scope, error = %e, "catch-up session failed");
                summary.failures.push(format!("{scope}: {e}"));
            }
        }
    }
    summary
}

/// One scope with one peer: reconcile, fetch, push, again while a reconciliation stopped at its round
/// limit with more to learn. Returns (fetched, stored, pushed).
async fn session(ctx: &Ctx, peer: PeerId, scope: &str) -> Result<(usize, usize, usize), String> {
    let mut total = (0, 0, 0);
    for _ in 0..MAX_SESSIONS_PER_SCOPE {
        let (fetched, stored, pushed, complete) = one_session(ctx, peer, scope).await?;
        total = (total.0 + fetched, total.1 + stored, total.2 + pushed);
        if complete {
            break;
        }
    }
    Ok(total)
}

/// A fetch of at least this many records reports its progress (`NodeEvent::SyncProgress`), for the
/// progress bar of `troc up`; smaller ones only report `SyncDone`.
const PROGRESS_FROM: usize = 256;

/// Back-to-back sessions for one scope at most, when each stops at the round limit.
const MAX_SESSIONS_PER_SCOPE: usize = 8;

async fn one_session(ctx: &Ctx, peer: PeerId, scope: &str) -> Result<(usize, usize, usize, bool), String> {
    let items = items_of(ctx, scope).await?;
    let (mut reconciler, mut req) = Reconciler::start(scope.to_owned(), items).map_err(|e| e.to_string())?;
    let (have, need, complete) = loop {
        match request(ctx, peer, req).await? {
            SyncResponse::Reconcile { msg } => match reconciler.on_response(msg).map_err(|e| e.to_string())? {
                Step::Continue(next) => req = next,
                Step::Done { have, need, complete } => break (have, need, complete),
            },
            SyncResponse::Refused { code, message } => return Err(format!("refused ({code}): {message}")),
            _ => {
                ctx.metrics.reject(Source::Sync, "bad_sync_message");
                return Err("unexpected response to a reconcile request".into());
            }
        }
    };

    // Fetch what we lack, by id prefix (reconciliation learns only prefixes of what we lack). A
    // prefix cannot be checked against the ids we refuse (superseded, withdrawn, revoked), so such
    // a record is fetched and refused by the ingest path; we then push what made it dead (the
    // newer revision, the withdrawal), after which the peer drops it too.
    let (mut fetched, mut stored) = (0, 0);
    let total = need.len();
    let report = total >= PROGRESS_FROM;
    if report {
        let _ = ctx.events.send(NodeEvent::SyncProgress { peer, scope: scope.to_owned(), fetched: 0, total });
    }
    let mut queue: std::collections::VecDeque<sync::IdPrefix> = need.into();
    let mut rounds = 0;
    while !queue.is_empty() && rounds < 10_000 {
        rounds += 1;
        let n = queue.len().min(sync::MAX_FETCH_IDS);
        let prefixes: Vec<sync::IdPrefix> = queue.drain(..n).collect();
        let fetch = SyncRequest::Fetch { scope: scope.to_owned(), prefixes: prefixes.clone() };
        match request(ctx, peer, fetch).await? {
            SyncResponse::Records { records, missing } => {
                // Ids the peer no longer has (`missing`) are dropped; ids it did not send for lack of
                // room are asked again. A peer that sends nothing at all is not asked again.
                if records.is_empty() {
                    break;
                }
                // Only what was asked for: a peer that answers with other records (a way around the
                // per-author rate of gossip, fetch after fetch, since what was asked stays unanswered)
                // breaks the protocol. Nothing of its answer is kept, each such record is a strike.
                let asked: std::collections::HashSet<sync::IdPrefix> = prefixes.iter().copied().collect();
                let unasked = records
                    .iter()
                    .filter_map(|r| troc_protocol::id_of_bytes(r))
                    .filter(|id| !asked.contains(&sync::prefix_of(id)))
                    .count();
                if unasked > 0 {
                    ctx.metrics.reject(Source::Sync, "bad_sync_message");
                    let _ = ctx.commands.send(Command::Strike { peer, count: unasked }).await;
                    return Err(format!("the peer answered a fetch with {unasked} records it was not asked for"));
                }
                let received: Vec<RecordId> = records.iter().filter_map(|r| troc_protocol::id_of_bytes(r)).collect();
                queue.extend(sync::not_sent(&prefixes, &received, &missing));
                fetched += records.len();
                stored += ingest(ctx, peer, records).await?;
                if report {
                    let fetched = fetched.min(total);
                    let _ = ctx.events.send(NodeEvent::SyncProgress { peer, scope: scope.to_owned(), fetched, total });
                }
            }
            SyncResponse::Refused { code, message } => return Err(format!("fetch refused ({code}): {message}")),
            _ => {
                ctx.metrics.reject(Source::Sync, "bad_sync_message");
                return Err("unexpected response to a fetch".into());
            }
        }
    }

    // Push what the peer lacks.
    let mut pushed = 0;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for id in have {
        let Ok(Some(bytes)) = ctx.store.get_bytes(&id) else { continue };
        if batch.len() >= sync::MAX_PUSH_RECORDS || batch_bytes + bytes.len() > sync::MAX_PUSH_BYTES {
            pushed += push(ctx, peer, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
        batch_bytes += bytes.len();
        batch.push(bytes);
    }
    if !batch.is_empty() {
        pushed += push(ctx, peer, batch).await?;
    }
    let stats = reconciler.stats();
    ctx.metrics.sync_session(fetched as u64, pushed as u64, stats.bytes_sent, stats.bytes_received);
    Ok((fetched, stored, pushed, complete))
}

async fn push(ctx: &Ctx, peer: PeerId, records: Vec<Vec<u8>>) -> Result<usize, String> {
    let n = records.len();
    match request(ctx, peer, SyncRequest::Push { records }).await? {
        SyncResponse::Pushed { .. } => Ok(n),
        SyncResponse::Refused { code, message } => Err(format!("push refused ({code}): {message}")),
        _ => Err("unexpected response to a push".into()),
    }
}

/// Sends records from a peer through the ingest path and counts how many were stored.
async fn ingest(ctx: &Ctx, peer: PeerId, records: Vec<Vec<u8>>) -> Result<usize, String> {
    if records.is_empty() {
        return Ok(0);
    }
    let (tx, rx) = oneshot::channel();
    ctx.ingest
        .send(Job::Records { origin: Box::new(Origin::Sync { peer }), items: records, reply: Some(tx) })
        .await
        .map_err(|_| "node shut down".to_string())?;
    let results = rx.await.map_err(|_| "node shut down".to_string())?;
    // A peer that pushes or serves records that are its fault (forged, malformed ...) gets a strike
    // for each, like a peer that gossips them; persistent offenders are disconnected.
    let strikes = results
        .iter()
        .filter(|r| matches!(r, ItemResult::Rejected { code, .. } if crate::ingest::senders_fault(code)))
        .count();
    if strikes > 0 {
        let _ = ctx.commands.send(Command::Strike { peer, count: strikes }).await;
    }
    Ok(results.iter().filter(|r| matches!(r, ItemResult::Stored { .. })).count())
}

/// Answers a peer's catch-up request.
async fn serve(ctx: &Ctx, peer: PeerId, request: SyncRequest) -> SyncResponse {
    if let Err(e) = sync::validate_request(&request) {
        ctx.metrics.reject(Source::Sync, "bad_sync_message");
        return e.to_refusal();
    }
    match request {
        SyncRequest::Reconcile { scope, msg, .. } => {
            if !follows(ctx, &scope) {
                return unknown_scope(&scope);
            }
            let responder = match responder(ctx, &scope).await {
                Ok(r) => r,
                Err(e) => return SyncResponse::Refused { code: "internal".into(), message: e },
            };
            match sync::respond(&responder, &msg) {
                Ok(msg) => SyncResponse::Reconcile { msg },
                Err(e) => {
                    ctx.metrics.reject(Source::Sync, "bad_sync_message");
                    SyncResponse::Refused { code: "bad_message".into(), message: e.to_string() }
                }
            }
        }
        SyncRequest::Fetch { scope, prefixes } => {
            if !follows(ctx, &scope) {
                return unknown_scope(&scope);
            }
            // Prefixes are resolved among the scope's live items, as reconciled.
            let responder = match responder(ctx, &scope).await {
                Ok(r) => r,
                Err(e) => return SyncResponse::Refused { code: "internal".into(), message: e },
            };
            let result = blocking(ctx, move |store| {
                sync::answer_fetch(&responder, &prefixes, |id| store.get_bytes(id))
                    .unwrap_or_else(|e| SyncResponse::Refused { code: "internal".into(), message: e.to_string() })
            })
            .await;
            result.unwrap_or_else(|e| SyncResponse::Refused { code: "internal".into(), message: e })
        }
        SyncRequest::Push { records } => match ingest(ctx, peer, records).await {
            Ok(n) => SyncResponse::Pushed { accepted: n as u32 },
            Err(e) => SyncResponse::Refused { code: "internal".into(), message: e },
        },
    }
}

fn follows(ctx: &Ctx, scope: &str) -> bool {
    ctx.scopes.read().map(|s| s.iter().any(|f| f == scope)).unwrap_or(false)
}

fn unknown_scope(scope: &str) -> SyncResponse {
    SyncResponse::Refused { code: "unknown_scope".into(), message: format!("this node does not follow {scope}") }
}

/// The responder for a scope, from the cache when the store has not changed since it was built.
async fn responder(ctx: &Ctx, scope: &str) -> Result<Arc<Responder>, String> {
    let generation = ctx.generation.load(std::sync::atomic::Ordering::Relaxed);
    if let Ok(cache) = ctx.cache.read()
        && let Some((g, r)) = cache.get(scope)
        && *g == generation
    {
        return Ok(r.clone());
    }
    let items = items_of(ctx, scope).await?;
    let r = Arc::new(Responder::new(items).map_err(|e| e.to_string())?);
    if let Ok(mut cache) = ctx.cache.write() {
        cache.insert(scope.to_owned(), (generation, r.clone()));
    }
    Ok(r)
}
