//! The deal service: a task beside the swarm task that
//! - answers direct deal requests (stores the records a party sends, countersigns an agreement
//!   that matches our own live proposal exactly, keeps an extension request for the person);
//! - delivers the outbox: messages for a peer are sent in order when the peer connects, when a new
//!   one is queued, and otherwise retried with backoff (1 s doubling to 10 min) until they expire;
//!   the swarm dials the peer by its PeerId (Kademlia and known addresses);
//! - reveals our hidden reviews once both parties' commitments are in or the window closed;
//! - gives each reminder once (a loan due within 24 hours, a loan overdue);
//! - turns stored deal records that concern us into `deal_*` events.
//!
//! Every channel it reads is bounded; a delivery to one peer runs in a task of its own (at most
//! one per peer), so a slow peer never holds up answers to others.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use troc_protocol::{
    Agreement, Body, Identity, PartiallySigned, Proposal, PublicKey, RecordId, RecordType, Signed, SignedRecord,
    Timestamp,
};

use super::state::{self, DealStatus};
use super::{DealAnswer, DealMessage, DealRequest, DealResponse, is_transient};
use crate::events::NodeEvent;
use crate::ingest::{ItemResult, Job, Origin};
use crate::metrics::{Metrics, Source};
use crate::node::Command;
use crate::now_secs;
use crate::store::{OutboxEntry, OutboxKind, OutboxLimits, REVIEW_WINDOW_SECS, Store};

/// Reminder kinds, for [`Store::reminder_once`].
const REMINDER_DUE_SOON: u8 = 1;
const REMINDER_OVERDUE: u8 = 2;
/// How long before the due date the first reminder comes.
pub const REMIND_BEFORE_SECS: u64 = 24 * 3600;
/// Longest wait between two attempts to deliver a message.
const MAX_BACKOFF_SECS: u64 = 600;

/// The clock of the deal service's reminders and of the deal views (due soon, overdue, ended): the
/// system clock, plus an offset that tests (and tools that simulate time) move forward with
/// [`DealClock::advance`], so reminders can be tested without waiting days. Records are always
/// signed with the system clock.
#[derive(Debug, Clone, Default)]
pub struct DealClock {
    offset: Arc<std::sync::atomic::AtomicI64>,
}

impl DealClock {
    /// Now, as the deal service sees it (Unix seconds).
    pub fn now(&self) -> Timestamp {
        now_secs().saturating_add_signed(self.offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves this clock `secs` seconds forward (backward if negative).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Messages to the deal service.
#[derive(Debug)]
pub(crate) enum ToDeals {
    /// A request from a peer; answer with `Command::RespondDeal { channel }`.
    Inbound {
        peer: PeerId,
        request: DealRequest,
        channel: u64,
    },
    PeerConnected {
        peer: PeerId,
    },
    /// Something was queued for `peer`: deliver now.
    Kick {
        peer: PublicKey,
    },
    /// Look at the hidden reviews now.
    CheckReveals,
    /// A delivery task for `peer` finished.
    FlushDone {
        peer: PublicKey,
    },
}

/// What the service and the actions share.
#[derive(Clone)]
pub(crate) struct DealCtx {
    pub commands: mpsc::Sender<Command>,
    pub ingest: mpsc::Sender<Job>,
    pub store: Store,
    pub identity: Arc<Identity>,
    pub events: broadcast::Sender<NodeEvent>,
    pub metrics: Metrics,
    pub outbox: OutboxLimits,
    pub to_deals: mpsc::Sender<ToDeals>,
    pub clock: DealClock,
}

impl std::fmt::Debug for DealCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DealCtx").finish_non_exhaustive()
    }
}

impl DealCtx {
    pub fn me(&self) -> PublicKey {
        *self.identity.public()
    }

    /// Ingests records through the one ingest path.
    pub async fn ingest(&self, origin: Origin, items: Vec<Vec<u8>>) -> Option<Vec<ItemResult>> {
        let (tx, rx) = oneshot::channel();
        self.ingest.send(Job::Records { origin: Box::new(origin), items, reply: Some(tx) }).await.ok()?;
        rx.await.ok()
    }

    /// Stores (and, if public, gossips) a record of ours; `Err` with the refusal otherwise.
    pub async fn publish(&self, record: &SignedRecord) -> Result<(), (String, String)> {
        match self.ingest(Origin::Local, vec![record.bytes().to_vec()]).await.and_then(|mut v| v.pop()) {
            Some(ItemResult::Stored { .. } | ItemResult::Duplicate { .. }) => Ok(()),
            Some(ItemResult::NotKept { reason, .. }) => Err((reason.clone(), format!("not stored: {reason}"))),
            Some(ItemResult::Rejected { code, reason }) => Err((code.to_owned(), reason)),
            None => Err(("node_error".into(), "the node has shut down".into())),
        }
    }

    /// Queues a message for `peer` and asks the service to deliver it now.
    pub fn queue(&self, peer: &PublicKey, kind: OutboxKind, bytes: &[u8]) -> Result<(), crate::store::StoreError> {
        self.store.outbox_push(peer, kind, bytes, now_secs(), self.outbox)?;
        let _ = self.to_deals.try_send(ToDeals::Kick { peer: *peer });
        Ok(())
    }

    fn event(&self, kind: &'static str, deal: RecordId, peer: PublicKey, record: Option<RecordId>) {
        let _ = self.events.send(NodeEvent::Deal { kind, deal, peer, record });
    }
}

/// The service task. Runs until `shutdown` turns true or its channel closes.
pub(crate) async fn run(
    ctx: DealCtx,
    mut rx: mpsc::Receiver<ToDeals>,
    mut shutdown: watch::Receiver<bool>,
    retry: Duration,
) {
    let mut tick = tokio::time::interval(retry);
    let mut events = ctx.events.subscribe();
    let in_flight: Arc<Mutex<HashSet<PublicKey>>> = Arc::default();
    // Answers and deliveries in flight: bounded by the swarm's in-flight limit and by one delivery
    // per peer; aborted and awaited at shutdown, so nothing holds the store after it.
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            msg = rx.recv() => match msg {
                None => break,
                Some(ToDeals::Inbound { peer, request, channel }) => {
                    let ctx = ctx.clone();
                    tasks.spawn(async move {
                        let (answer, ingested) = answer(&ctx, peer, &request).await;
                        // Counted once: a record refused by the ingest path is counted there; a
                        // transient refusal (retried later) is no rejection.
                        if let DealAnswer::Refused { code, .. } = &answer
                            && !ingested
                            && !is_transient(code)
                            && code != "store_error"
                        {
                            ctx.metrics.reject(Source::Deal, code);
                        }
                        let response = DealResponse { msg: request.msg, answer };
                        let _ = ctx.commands.send(Command::RespondDeal { channel, response }).await;
                    });
                }
                Some(ToDeals::PeerConnected { peer }) => {
                    if let Ok(pk) = PublicKey::from_peer_id(&peer) {
                        start_delivery(&ctx, &mut tasks, &in_flight, pk, true);
                    }
                }
                Some(ToDeals::Kick { peer }) => start_delivery(&ctx, &mut tasks, &in_flight, peer, true),
                Some(ToDeals::FlushDone { peer }) => {
                    if let Ok(mut f) = in_flight.lock() {
                        f.remove(&peer);
                    }
                }
                Some(ToDeals::CheckReveals) => reveal(&ctx).await,
            },
            _ = tick.tick() => {
                let now = now_secs();
                let due: HashSet<PublicKey> = match ctx.store.outbox() {
                    Ok(entries) => entries.into_iter().filter(|e| e.next_try <= now).map(|e| e.peer).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the outbox");
                        HashSet::new()
                    }
                };
                for peer in due {
                    start_delivery(&ctx, &mut tasks, &in_flight, peer, false);
                }
                reveal(&ctx).await;
                remind(&ctx);
            }
            ev = events.recv() => match ev {
                Ok(NodeEvent::Stored { id, record_type, .. }) if is_deal_type(record_type) => {
                    on_stored(&ctx, id);
                    if matches!(record_type, RecordType::ReviewCommitment | RecordType::Review | RecordType::Completion | RecordType::Cancellation) {
                        reveal(&ctx).await;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

fn is_deal_type(t: RecordType) -> bool {
    !matches!(t, RecordType::Profile | RecordType::Listing | RecordType::Withdrawal | RecordType::Vouch)
}

/// Says `deal_revocation` for a revocation of a record of one of our deals, or `deal_annulled`
/// once both parties revoked the agreement (the store then dropped it).
fn on_revocation(ctx: &DealCtx, r: &SignedRecord, target: &RecordId) {
    let me = ctx.me();
    match ctx.store.get(target) {
        Ok(Some(t)) => {
            let deal = match t.body() {
                Body::Agreement(_) => t.id(),
                body => match state::deal_of(body) {
                    Some(d) => d,
                    None => return,
                },
            };
            let Ok(Some(agreement)) = ctx.store.get(&deal) else { return };
            let Body::Agreement(a) = agreement.body() else { return };
            let parties = [*agreement.author(), a.counterparty];
            if !parties.contains(&me) {
                return;
            }
            let peer =
                if *r.author() == me { if parties[0] == me { parties[1] } else { parties[0] } } else { *r.author() };
            ctx.event("deal_revocation", deal, peer, Some(r.id()));
        }
        Ok(None) => {
            // Gone: annulled if we and one other person revoked it.
            let Ok(revocations) = ctx.store.records_referencing(target) else { return };
            let by: Vec<PublicKey> = state::revokers(target, &revocations);
            if let Some(peer) = by.iter().find(|p| **p != me)
                && by.contains(&me)
                && ctx.store.is_refused(target).unwrap_or(false)
            {
                ctx.event("deal_annulled", *target, *peer, Some(r.id()));
            }
        }
        Err(_) => {}
    }
}

/// Says `deal_<type>` for a stored deal record that concerns us.
fn on_stored(ctx: &DealCtx, id: RecordId) {
    let Ok(Some(r)) = ctx.store.get(&id) else { return };
    if let Body::Revocation(v) = r.body() {
        return on_revocation(ctx, &r, &v.target);
    }
    let me = ctx.me();
    let (deal, other) = match r.body() {
        Body::Proposal(p) => (r.id(), if *r.author() == me { p.counterparty } else { *r.author() }),
        Body::Agreement(a) => (r.id(), if *r.author() == me { a.counterparty } else { *r.author() }),
        body => {
            let Some(deal) = state::deal_of(body) else { return };
            (deal, *r.author())
        }
    };
    let party = match r.body() {
        Body::Proposal(p) => *r.author() == me || p.counterparty == me,
        Body::Agreement(a) => *r.author() == me || a.counterparty == me,
        _ => match ctx.store.get(&deal) {
            Ok(Some(d)) => match d.body() {
                Body::Agreement(a) => *d.author() == me || a.counterparty == me,
                Body::Proposal(p) => *d.author() == me || p.counterparty == me,
                _ => false,
            },
            _ => false,
        },
    };
    if !party {
        return;
    }
    let kind = match r.record_type() {
        RecordType::Proposal => "deal_proposal",
        RecordType::Agreement => "deal_agreement",
        RecordType::Handover => "deal_handover",
        RecordType::Return => "deal_return",
        RecordType::Acknowledgement => "deal_acknowledgement",
        RecordType::Completion => "deal_completion",
        RecordType::Cancellation => "deal_cancellation",
        RecordType::Extension => "deal_extension",
        RecordType::Review => "deal_review",
        RecordType::ReviewCommitment => "deal_review_commitment",
        _ => return,
    };
    let peer = if *r.author() == me { other } else { *r.author() };
    ctx.event(kind, deal, peer, Some(id));
}

fn start_delivery(
    ctx: &DealCtx,
    tasks: &mut JoinSet<()>,
    in_flight: &Arc<Mutex<HashSet<PublicKey>>>,
    peer: PublicKey,
    force: bool,
) {
    if peer == ctx.me() {
        return;
    }
    match in_flight.lock() {
        Ok(mut f) => {
            if !f.insert(peer) {
                return;
            }
        }
        Err(_) => return,
    }
    let ctx = ctx.clone();
    tasks.spawn(async move {
        deliver(&ctx, peer, force).await;
        let _ = ctx.to_deals.send(ToDeals::FlushDone { peer }).await;
    });
}

/// Sends `peer` its queued messages in order, stopping at the first that fails (it is retried
/// later, with backoff).
async fn deliver(ctx: &DealCtx, peer: PublicKey, force: bool) {
    let entries = match ctx.store.outbox() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the outbox");
            return;
        }
    };
    let mut entries: Vec<OutboxEntry> = entries.into_iter().filter(|e| e.peer == peer).collect();
    entries.sort_by_key(|e| e.seq);
    for mut e in entries {
        let now = now_secs();
        if e.expires_at <= now {
            tracing::info!(peer = %peer.short(), "a deal message expired undelivered");
            let _ = ctx.store.outbox_remove(&peer, e.seq);
            continue;
        }
        if !force && e.next_try > now {
            return;
        }
        let body = match e.kind {
            OutboxKind::Record => DealMessage::Record { bytes: e.bytes.clone() },
            OutboxKind::Cosign => DealMessage::Cosign { bytes: e.bytes.clone() },
        };
        let request = DealRequest { msg: e.seq, body };
        let (reply, rx) = oneshot::channel();
        let sent = ctx.commands.send(Command::SendDeal { peer: peer.to_peer_id(), request, reply }).await;
        let result = match sent {
            Ok(()) => rx.await.unwrap_or_else(|_| Err("the node has shut down".into())),
            Err(_) => return,
        };
        let done = match result {
            Ok(DealResponse { answer: DealAnswer::Stored | DealAnswer::Pending, .. }) => true,
            Ok(DealResponse { answer: DealAnswer::Countersigned { signature }, .. }) => {
                completed(ctx, &e, &signature).await;
                true
            }
            Ok(DealResponse { answer: DealAnswer::Refused { code, message }, .. }) => {
                if is_transient(&code) {
                    false
                } else {
                    tracing::info!(peer = %peer.short(), %code, %message, "a deal message was refused");
                    if let Some(id) = troc_protocol::id_of_bytes(&e.bytes).or_else(|| partial_id(&e.bytes)) {
                        ctx.event("deal_message_refused", id, peer, Some(id));
                    }
                    true
                }
            }
            Err(error) => {
                tracing::debug!(peer = %peer.short(), %error, "could not deliver a deal message");
                false
            }
        };
        if done {
            let _ = ctx.store.outbox_remove(&peer, e.seq);
        } else {
            e.attempts = e.attempts.saturating_add(1);
            e.next_try = now.saturating_add((1u64 << e.attempts.min(10)).min(MAX_BACKOFF_SECS));
            let _ = ctx.store.outbox_update(&e);
            return;
        }
    }
}

fn partial_id(bytes: &[u8]) -> Option<RecordId> {
    PartiallySigned::from_bytes(bytes, now_secs()).ok().map(|p| p.id())
}

/// The counterparty countersigned our agreement or extension: complete and publish it.
async fn completed(ctx: &DealCtx, e: &OutboxEntry, signature: &[u8]) {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        tracing::info!("a countersignature of the wrong length");
        return;
    };
    // Our own partial: decode with a lenient clock (it may have waited in the outbox).
    let partial = match PartiallySigned::from_bytes(&e.bytes, now_secs().max(e.created_at)) {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(error = %err, "our queued partial record does not decode");
            return;
        }
    };
    match partial.add_countersignature(&sig) {
        Ok(record) => {
            if let Err((code, reason)) = ctx.publish(&record).await {
                tracing::warn!(%code, %reason, "could not store a countersigned record");
            }
        }
        Err(err) => {
            tracing::info!(error = %err, "a forged countersignature");
            ctx.metrics.reject(Source::Deal, "bad_signature");
        }
    }
}

/// Answers one direct request from `peer`; the flag says whether the answer comes from the ingest
/// path (which counted its own rejections).
async fn answer(ctx: &DealCtx, peer: PeerId, request: &DealRequest) -> (DealAnswer, bool) {
    let refuse = |code: &str, message: String| DealAnswer::Refused { code: code.to_owned(), message };
    let Ok(from) = PublicKey::from_peer_id(&peer) else {
        return (refuse("author_mismatch", "the peer has no ed25519 key".into()), false);
    };
    match ctx.store.is_blocked(&from) {
        Ok(true) => return (refuse("blocked", "you are blocked on this node".into()), false),
        Ok(false) => {}
        Err(e) => return (refuse("store_error", e.to_string()), false),
    }
    match &request.body {
        DealMessage::Record { bytes } => {
            let answer = match ctx.ingest(Origin::Deal { peer }, vec![bytes.clone()]).await.and_then(|mut v| v.pop()) {
                Some(ItemResult::Stored { .. } | ItemResult::Duplicate { .. }) => DealAnswer::Stored,
                Some(ItemResult::NotKept { reason, .. }) if is_transient(&reason) => refuse(&reason, reason.clone()),
                // Valid but not kept (stale, a quota): nothing more to deliver.
                Some(ItemResult::NotKept { .. }) => DealAnswer::Stored,
                Some(ItemResult::Rejected { code, reason }) => refuse(code, reason),
                None => refuse("busy", "the node is shutting down".into()),
            };
            (answer, true)
        }
        DealMessage::Cosign { bytes } => (cosign(ctx, &from, bytes).await, false),
    }
}

/// A partially signed agreement or extension from `from`.
async fn cosign(ctx: &DealCtx, from: &PublicKey, bytes: &[u8]) -> DealAnswer {
    let refuse = |code: &str, message: String| DealAnswer::Refused { code: code.to_owned(), message };
    let me = ctx.me();
    match check_cosign(&ctx.store, &me, from, bytes, now_secs()) {
        Err(answer) => answer,
        Ok(CosignPlan::Again { signature }) => DealAnswer::Countersigned { signature },
        Ok(CosignPlan::Agreement(typed)) => {
            let record = match typed.countersign(&ctx.identity) {
                Ok(r) => r,
                Err(e) => return refuse(e.code(), e.to_string()),
            };
            let sig = record.signatures().nth(1).map(<[u8]>::to_vec).unwrap_or_default();
            match ctx.publish(&record.into_any()).await {
                Ok(()) => DealAnswer::Countersigned { signature: sig },
                Err((code, reason)) => refuse(&code, reason),
            }
        }
        Ok(CosignPlan::Extension { request, agreement }) => {
            if let Err(err) = ctx.store.extension_request_put(&request, bytes) {
                return refuse("store_error", err.to_string());
            }
            ctx.event("deal_extension_requested", agreement, *from, Some(request));
            DealAnswer::Pending
        }
    }
}

/// What to do with a partially signed record that passed [`check_cosign`].
#[derive(Debug)]
pub(crate) enum CosignPlan {
    /// Asked again (our answer was lost): the same signature again.
    Again { signature: Vec<u8> },
    /// An agreement matching a live proposal of ours: countersign and publish it.
    Agreement(Box<PartiallySigned<Agreement>>),
    /// An extension of one of our deals: keep the request (`request` is its id) for the person.
    Extension { request: RecordId, agreement: RecordId },
}

/// Every check of a `Cosign` message from `from` to `me` before the node acts on it: the bytes decode
/// as a partially signed record at `now` whose author is `from`, an agreement matching a live
/// proposal of ours or an extension of a deal between us. Reads the store, writes nothing. `Err` is
/// the answer to send. Separate from [`cosign`] so that the `deal` fuzz target runs these checks.
pub(crate) fn check_cosign(
    store: &Store,
    me: &PublicKey,
    from: &PublicKey,
    bytes: &[u8],
    now: Timestamp,
) -> Result<CosignPlan, DealAnswer> {
    let refuse = |code: &str, message: String| DealAnswer::Refused { code: code.to_owned(), message };
    let partial = PartiallySigned::from_bytes(bytes, now).map_err(|e| refuse(e.code(), e.to_string()))?;
    if partial.header().author != *from {
        return Err(refuse("author_mismatch", "the record's author did not send it".into()));
    }
    match partial.body().clone() {
        Body::Agreement(a) => {
            if a.counterparty != *me {
                return Err(refuse("not_for_us", "an agreement for someone else".into()));
            }
            if let Ok(Some(done)) = store.get(&partial.id())
                && let Some(sig) = done.signatures().nth(1)
            {
                return Ok(CosignPlan::Again { signature: sig.to_vec() });
            }
            if let Err(why) = matches_live_proposal(store, me, from, &a) {
                return Err(refuse("no_matching_proposal", why));
            }
            let typed =
                partial_typed::<Agreement>(partial).map_err(|()| refuse("malformed", "not an agreement".into()))?;
            Ok(CosignPlan::Agreement(Box::new(typed)))
        }
        Body::Extension(e) => {
            if e.counterparty != *me {
                return Err(refuse("not_for_us", "an extension for someone else".into()));
            }
            match store.get(&e.agreement) {
                Ok(Some(r)) => match r.body() {
                    Body::Agreement(a)
                        if (a.counterparty == *me && r.author() == from)
                            || (r.author() == me && a.counterparty == *from) => {}
                    _ => return Err(refuse("not_a_party", "not a deal between us".into())),
                },
                Ok(None) => return Err(refuse("unknown_deal", "the agreement is not here yet".into())),
                Err(err) => return Err(refuse("store_error", err.to_string())),
            }
            Ok(CosignPlan::Extension { request: partial.id(), agreement: e.agreement })
        }
        _ => Err(refuse("invalid_value", "only agreements and extensions are countersigned".into())),
    }
}

/// Re-types a partially signed record (it was decoded as any body).
fn partial_typed<T: troc_protocol::RecordBody>(p: PartiallySigned<Body>) -> Result<PartiallySigned<T>, ()> {
    p.downcast::<T>().map_err(drop)
}

/// Whether agreement `a`, proposed to be signed by `me` with `from`, matches exactly a live
/// proposal of ours to `from`: same listing, kind, start, and due = the proposal's end; not
/// withdrawn, declined, countered or already agreed.
pub(crate) fn matches_live_proposal(
    store: &Store,
    me: &PublicKey,
    from: &PublicKey,
    a: &Agreement,
) -> Result<(), String> {
    let p: Signed<Proposal> = match store.get(&a.proposal) {
        Ok(Some(r)) => {
            r.downcast::<Proposal>().map_err(|_| "the agreement names something that is not a proposal".to_string())?
        }
        Ok(None) => return Err("no such proposal here".into()),
        Err(e) => return Err(e.to_string()),
    };
    if p.author() != me || p.body().counterparty != *from {
        return Err("not our proposal to you".into());
    }
    let b = p.body();
    if b.listing_author != a.listing_author
        || b.listing_key != a.listing_key
        || b.kind != a.kind
        || b.start != a.start
        || b.end != a.due
    {
        return Err("the agreement does not match the proposal".into());
    }
    let records = store.deals_of(me).map_err(|e| e.to_string())?;
    let superseded = records.iter().any(|r| matches!(r.body(), Body::Proposal(q) if q.supersedes == Some(p.id())));
    let cancelled = records.iter().any(|r| matches!(r.body(), Body::Cancellation(c) if c.deal == p.id()));
    let agreed = records.iter().any(|r| matches!(r.body(), Body::Agreement(x) if x.proposal == p.id()));
    if superseded || cancelled || agreed {
        return Err("the proposal is no longer open".into());
    }
    Ok(())
}

/// Reveals every hidden review of ours whose time has come: the other party's commitment (or
/// review) is in, or the review window closed.
async fn reveal(ctx: &DealCtx) {
    let hidden = match ctx.store.hidden_reviews() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the hidden reviews");
            return;
        }
    };
    let now = now_secs();
    for (id, bytes) in hidden {
        let Ok(review) = SignedRecord::from_bytes(&bytes, now) else {
            let _ = ctx.store.hidden_review_remove(&id);
            continue;
        };
        let Body::Review(v) = review.body() else { continue };
        let Ok(Some(agreement)) = ctx.store.get(&v.agreement) else { continue };
        let Ok(agreement) = agreement.downcast::<Agreement>() else { continue };
        let Ok(others) = ctx.store.records_referencing(&v.agreement) else { continue };
        let theirs = others.iter().any(|r| {
            r.author() == &v.subject && matches!(r.record_type(), RecordType::ReviewCommitment | RecordType::Review)
        });
        let closed = now > state::ended_at(&agreement, &others).saturating_add(REVIEW_WINDOW_SECS);
        if !(theirs || closed) {
            continue;
        }
        match ctx.publish(&review).await {
            Ok(()) => {
                let _ = ctx.store.hidden_review_remove(&id);
                if let Err(e) = ctx.queue(&v.subject, OutboxKind::Record, review.bytes()) {
                    tracing::warn!(error = %e, "could not queue a revealed review");
                }
                ctx.event("deal_review_revealed", v.agreement, v.subject, Some(id));
            }
            Err((code, reason)) if is_transient(&code) => tracing::debug!(%code, %reason, "reveal waits"),
            Err((code, reason)) => {
                tracing::warn!(%code, %reason, "a hidden review cannot be revealed: dropped");
                let _ = ctx.store.hidden_review_remove(&id);
            }
        }
    }
}

/// Gives each reminder once: a loan due within [`REMIND_BEFORE_SECS`], a loan overdue.
fn remind(ctx: &DealCtx) {
    let me = ctx.me();
    let Ok(records) = ctx.store.deals_of(&me) else { return };
    let now = ctx.clock.now();
    for g in state::group(records) {
        let Some(view) = state::derive(&g, now) else { continue };
        let (Some(agreement), Some(due)) = (view.agreement, view.due) else { continue };
        if view.status.is_final() || matches!(view.status, DealStatus::Returned) {
            continue;
        }
        let other = if view.proposer == me { view.receiver } else { view.proposer };
        if now >= due {
            if ctx.store.reminder_once(&agreement, REMINDER_OVERDUE).unwrap_or(false) {
                ctx.event("deal_overdue", agreement, other, None);
            }
        } else if now.saturating_add(REMIND_BEFORE_SECS) >= due
            && ctx.store.reminder_once(&agreement, REMINDER_DUE_SOON).unwrap_or(false)
        {
            ctx.event("deal_due_soon", agreement, other, None);
        }
    }
}

/// Whether a reminder applies now (for the inbox): `due_soon`, `overdue` or none.
pub fn reminder_of(due: Timestamp, now: Timestamp) -> Option<&'static str> {
    if now >= due {
        Some("overdue")
    } else if now.saturating_add(REMIND_BEFORE_SECS) >= due {
        Some("due_soon")
    } else {
        None
    }
}
