//! The reputation service: this node's own view of whom to trust, computed by the trust engine
//! ([`crate::trust`]) from the verified public records in the store, with this node's identity as
//! the viewer and its block list; and the vouches and revocations a person signs.
//!
//! How it stays cheap and bounded:
//! - The engine's input is a [`RecordFacts`] (a few fields per trust record: agreements, deal steps,
//!   acknowledgements, cancellations, extensions, reviews, review commitments, vouches, revocations).
//!   It is loaded from the store once, at the first query, and then kept up to date incrementally: a
//!   small task listens to the node's `Stored` events and notes the ids of new trust records (at most
//!   [`MAX_PENDING`]; beyond that, or when it missed events, the next rebuild reloads everything).
//!   It is also reloaded in full every [`FULL_RELOAD_EVERY`], which drops records the store pruned.
//!   Revocations are trust records like the others: noted, added, and applied by the facts with the
//!   deal state's rules (a step undone, an extension dropped, an agreement both parties revoked
//!   annulled with everything naming it) at the next rebuild, not at the next full reload.
//! - A query reuses the prepared [`TrustModel`] unless records arrived since it was built (or it is
//!   older than [`MAX_MODEL_AGE`]: decay and expiries move with time); a rebuild happens at most once
//!   per [`MIN_REBUILD_INTERVAL`], so a storm of queries cannot keep the node rebuilding: in between
//!   they get the last model, and the answer says when it was computed. Concurrent queries share one
//!   rebuild. The viewer's [`TrustView`] is cached for the current model and block list.
//! - Everything heavy (reading and verifying records, building the graph and the model, the view)
//!   runs on tokio's blocking pool, never on the swarm task or the async workers.
//!
//! Vouches and revocations are signed with the node's identity and go through the one ingest path
//! ([`NodeHandle::publish`]), so they are stored, gossiped and caught up like any global record.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use troc_protocol::limits::{MAX_VOUCH_CONTEXT, MAX_VOUCH_LIFETIME_SECS};
use troc_protocol::{
    Body, PublicKey, RecordError, RecordId, RecordType, Revocation, Signed, SignedRecord, Timestamp, Vouch,
};

use crate::events::NodeEvent;
use crate::ingest::ItemResult;
use crate::store::{Store, StoreError};
use crate::trust::{Explanation, PersonTrust, RecordFacts, Standing, TrustModel, TrustParams, TrustView, ViewStats};
use crate::{NodeError, NodeHandle, now_secs};

/// The record types the trust engine reads.
pub const TRUST_TYPES: &[RecordType] = &[
    RecordType::Agreement,
    RecordType::Handover,
    RecordType::Return,
    RecordType::Completion,
    RecordType::Cancellation,
    RecordType::Acknowledgement,
    RecordType::Extension,
    RecordType::Review,
    RecordType::ReviewCommitment,
    RecordType::Vouch,
    RecordType::Revocation,
];

/// At most one rebuild of the model per this interval.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);
/// A model older than this is rebuilt even without new records (decay and expiries move with time).
pub const MAX_MODEL_AGE: Duration = Duration::from_secs(300);
/// The facts are reloaded from the store this often (records pruned since are dropped).
pub const FULL_RELOAD_EVERY: Duration = Duration::from_secs(6 * 3600);
/// New trust records noted between two rebuilds, at most; beyond, the next rebuild reloads all.
pub const MAX_PENDING: usize = 10_000;
/// The longest list of `top` people.
pub const MAX_TOP: usize = 200;
/// The most paths an explanation gives.
pub const MAX_PATHS: usize = 5;
/// A vouch's default lifetime, in days.
pub const DEFAULT_VOUCH_DAYS: u64 = 365;
/// A vouch's longest lifetime, in days (the protocol's `MAX_VOUCH_LIFETIME_SECS`).
pub const MAX_VOUCH_DAYS: u64 = MAX_VOUCH_LIFETIME_SECS / DAY;
/// The most vouches listed in each direction by [`NodeHandle::vouches`].
pub const MAX_VOUCHES_LISTED: usize = 1000;
/// The record types whose revocation erases them on every node (deleted and refused for good):
/// what their author said alone and nobody built on. Every other record is kept and the revocation
/// stored beside it (`docs/protocol.md` section 14, revocations; [`RevokeEffect`]).
pub const ERASED_BY_REVOCATION: &[RecordType] = &[RecordType::Profile, RecordType::Listing, RecordType::Vouch];

/// What revoking a record does (`POST /v1/records/{id}/revoke`, `troc revoke`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeEffect {
    /// A profile, listing or vouch: deleted and refused by every node that gets the revocation.
    Erased,
    /// A review or review commitment: it no longer counts and its content is no longer shown; it
    /// keeps its place (no second review of the same deal).
    Withdrawn,
    /// A deal step (handover, return, acknowledgement, completion, cancellation) the other party
    /// had not built on: it no longer counts in the deal's state.
    Undone,
    /// An agreement or extension the other party has not revoked: recorded, no other effect until
    /// they revoke it too.
    WaitingForOtherParty,
    /// An agreement (or extension) both parties revoked: the agreement is annulled with every
    /// record naming it; an extension no longer moves the due date.
    Annulled,
    /// A proposal: withdrawn (a private cancellation sent to the other party, never gossiped).
    ProposalWithdrawn,
}

impl RevokeEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeEffect::Erased => "erased",
            RevokeEffect::Withdrawn => "withdrawn",
            RevokeEffect::Undone => "undone",
            RevokeEffect::WaitingForOtherParty => "waiting_for_other_party",
            RevokeEffect::Annulled => "annulled",
            RevokeEffect::ProposalWithdrawn => "proposal_withdrawn",
        }
    }
}

/// A revocation made: the record that does it (a revocation; for a proposal, the cancellation that
/// withdraws it) and its effect.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub record: SignedRecord,
    pub effect: RevokeEffect,
}

const DAY: u64 = 24 * 3600;
/// Records read and verified per chunk when loading the facts.
const LOAD_CHUNK: usize = 1024;

/// What can go wrong computing reputation, vouching or revoking.
#[derive(Debug, Error)]
pub enum ReputationError {
    #[error("the store failed")]
    Store(#[from] StoreError),
    #[error("invalid record")]
    Record(#[from] RecordError),
    #[error("the node has shut down")]
    ShutDown,
    #[error("the reputation computation failed: {0}")]
    Task(String),
    #[error("no record {0} in this node's store")]
    NotFound(RecordId),
    #[error("record {0} is someone else's: only its author can revoke it")]
    NotYours(RecordId),
    #[error("{0}")]
    NotRevocable(&'static str),
    #[error("the other party already built on this {0} (signed a record of the deal after it): it stands")]
    BuiltOn(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("the node did not keep the record: {reason}")]
    Refused { code: String, reason: String },
}

impl From<NodeError> for ReputationError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::ShutDown => ReputationError::ShutDown,
            NodeError::Record(r) => ReputationError::Record(r),
            NodeError::Store(s) => ReputationError::Store(s),
            other => ReputationError::Task(other.to_string()),
        }
    }
}

/// One person's reputation in this node's view.
#[derive(Debug, Clone, Serialize)]
pub struct Reputation {
    pub person: PersonTrust,
    /// The strongest paths of trust to them, when asked for.
    pub explanation: Option<Explanation>,
    /// The view it comes from.
    pub view: ViewInfo,
}

/// The best-ranked people in this node's view.
#[derive(Debug, Clone, Serialize)]
pub struct TopReputation {
    pub people: Vec<PersonTrust>,
    pub view: ViewInfo,
}

/// About the view an answer comes from.
#[derive(Debug, Clone, Serialize)]
pub struct ViewInfo {
    /// The `now` the model was computed at (Unix seconds).
    pub computed_at: Timestamp,
    /// Trust records stored since, not yet in the model (they are at the next rebuild).
    pub pending: usize,
    pub stats: ViewStats,
}

/// A vouch, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct VouchInfo {
    pub id: RecordId,
    pub author: PublicKey,
    pub subject: PublicKey,
    pub context: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl VouchInfo {
    fn of(v: &Signed<Vouch>) -> Self {
        VouchInfo {
            id: v.id(),
            author: *v.author(),
            subject: v.body().subject,
            context: v.body().context.clone(),
            created_at: v.created_at(),
            expires_at: v.body().expires_at,
        }
    }
}

/// The vouches given by this node's person and received by them.
#[derive(Debug, Clone, Serialize)]
pub struct Vouches {
    pub given: Vec<VouchInfo>,
    pub received: Vec<VouchInfo>,
}

/// Trust records stored since the last rebuild, noted by the watcher task.
#[derive(Debug, Default)]
struct Pending {
    ids: HashSet<RecordId>,
    /// Too many, or events were missed: reload everything.
    overflow: bool,
}

/// The prepared state, behind an async lock held across a rebuild (so concurrent queries share it).
#[derive(Default)]
struct State {
    /// `None`: not loaded yet (or a rebuild failed half-way): the next rebuild loads it all.
    facts: Option<RecordFacts>,
    loaded_at: Option<Instant>,
    model: Option<Arc<TrustModel>>,
    built_at: Option<Instant>,
    generation: u64,
    /// The viewer's view for `(generation, block list)`.
    view: Option<(u64, Vec<PublicKey>, Arc<TrustView>)>,
}

/// The service. Cheap to clone; lives in the [`NodeHandle`].
#[derive(Clone)]
pub(crate) struct ReputationService {
    store: Store,
    viewer: PublicKey,
    pending: Arc<Mutex<Pending>>,
    state: Arc<tokio::sync::Mutex<State>>,
}

impl std::fmt::Debug for ReputationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReputationService").field("viewer", &self.viewer).finish_non_exhaustive()
    }
}

impl ReputationService {
    /// The service, and the task that notes new trust records (it holds no store handle and ends
    /// at shutdown or when the event channel closes).
    pub(crate) fn start(
        store: Store,
        viewer: PublicKey,
        events: broadcast::Receiver<NodeEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(watch_records(pending.clone(), events, shutdown));
        ReputationService { store, viewer, pending, state: Arc::default() }
    }

    fn pending_len(&self) -> usize {
        self.pending.lock().map(|p| p.ids.len()).unwrap_or(0)
    }

    /// The viewer's current view: the cached one, or rebuilt when records arrived (at most once
    /// per [`MIN_REBUILD_INTERVAL`]) or the model is older than [`MAX_MODEL_AGE`].
    pub(crate) async fn view(&self) -> Result<(Arc<TrustView>, ViewInfo), ReputationError> {
        let store = self.store.clone();
        let blocked = tokio::task::spawn_blocking(move || store.blocked())
            .await
            .map_err(|e| ReputationError::Task(e.to_string()))??;
        let mut st = self.state.lock().await;
        let (dirty, overflow) = {
            let p = self.pending.lock().map_err(|_| ReputationError::Task("a lock was poisoned".into()))?;
            (!p.ids.is_empty() || p.overflow, p.overflow)
        };
        let full = overflow || st.facts.is_none() || st.loaded_at.is_none_or(|t| t.elapsed() >= FULL_RELOAD_EVERY);
        let old = st.built_at.is_none_or(|t| t.elapsed() >= MAX_MODEL_AGE);
        let may = st.built_at.is_none_or(|t| t.elapsed() >= MIN_REBUILD_INTERVAL);
        if st.model.is_none() || ((dirty || full || old) && may) {
            self.rebuild(&mut st, full).await?;
        }
        let model = st.model.clone().ok_or_else(|| ReputationError::Task("no model".into()))?;
        let view = match &st.view {
            Some((g, b, v)) if *g == st.generation && *b == blocked => v.clone(),
            _ => {
                let viewer = self.viewer;
                let b = blocked.clone();
                let v = tokio::task::spawn_blocking(move || Arc::new(model.view(&viewer, &b)))
                    .await
                    .map_err(|e| ReputationError::Task(e.to_string()))?;
                st.view = Some((st.generation, blocked, v.clone()));
                v
            }
        };
        let info = ViewInfo { computed_at: view.now(), pending: self.pending_len(), stats: view.stats().clone() };
        Ok((view, info))
    }

    /// Brings the facts up to date (in full, or with the noted records) and prepares a new model.
    async fn rebuild(&self, st: &mut State, full: bool) -> Result<(), ReputationError> {
        let ids: Vec<RecordId> = {
            let mut p = self.pending.lock().map_err(|_| ReputationError::Task("a lock was poisoned".into()))?;
            p.overflow = false;
            p.ids.drain().collect()
        };
        let facts = if full { None } else { st.facts.take() };
        let store = self.store.clone();
        let now = now_secs();
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || -> Result<(RecordFacts, TrustModel), StoreError> {
            let facts = update_facts(&store, facts, &ids)?;
            let graph = facts.build(now);
            let model = TrustModel::new(&graph, now, TrustParams::default());
            Ok((facts, model))
        })
        .await
        .map_err(|e| ReputationError::Task(e.to_string()));
        match done {
            Ok(Ok((facts, model))) => {
                st.facts = Some(facts);
                if full {
                    st.loaded_at = Some(Instant::now());
                }
                st.model = Some(Arc::new(model));
                st.built_at = Some(Instant::now());
                st.generation += 1;
                st.view = None;
                tracing::debug!(full, elapsed = ?started.elapsed(), "reputation model rebuilt");
                Ok(())
            }
            Ok(Err(e)) => {
                // The facts were consumed: the next rebuild loads them again.
                st.facts = None;
                Err(e.into())
            }
            Err(e) => {
                st.facts = None;
                Err(e)
            }
        }
    }
}

/// The facts brought up to date: `facts` with the records `ids` added (those still stored), or,
/// without `facts`, every trust record loaded from the store. A revocation is added like any record
/// (the store keeps revocations, also those that annulled an agreement), and the facts apply it at
/// their next build.
fn update_facts(store: &Store, facts: Option<RecordFacts>, ids: &[RecordId]) -> Result<RecordFacts, StoreError> {
    Ok(match facts {
        Some(mut f) => {
            for id in ids {
                // Gone since (erased, annulled, pruned): nothing to add.
                if let Some(r) = store.get(id)? {
                    f.add(&r);
                }
            }
            f
        }
        None => {
            let mut f = RecordFacts::new();
            store.for_each_of_types(TRUST_TYPES, LOAD_CHUNK, |chunk| chunk.iter().for_each(|r| f.add(r)))?;
            f
        }
    })
}

/// Notes the ids of trust records as they are stored. Ends at shutdown or when the channel closes.
async fn watch_records(
    pending: Arc<Mutex<Pending>>,
    mut events: broadcast::Receiver<NodeEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            e = events.recv() => e,
        };
        let Ok(mut p) = pending.lock() else { return };
        match event {
            Ok(NodeEvent::Stored { id, record_type, .. }) if TRUST_TYPES.contains(&record_type) => {
                if p.ids.len() >= MAX_PENDING {
                    p.overflow = true;
                    p.ids.clear();
                } else if !p.overflow {
                    p.ids.insert(id);
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                p.overflow = true;
                p.ids.clear();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl NodeHandle {
    /// A person's reputation in this node's view (score, rank, standing, evidence), with the
    /// `paths` strongest paths of trust to them if `paths > 0` (at most [`MAX_PATHS`]).
    pub async fn reputation(&self, person: &PublicKey, paths: usize) -> Result<Reputation, ReputationError> {
        if paths > MAX_PATHS {
            return Err(ReputationError::Invalid(format!("at most {MAX_PATHS} paths")));
        }
        let (view, info) = self.reputation.view().await?;
        let person = *person;
        let store = self.store().clone();
        let (p, e) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let mut p = view.person(&person);
            // The engine marks the blocked people it has records of; someone blocked before any of
            // their trust records arrived is blocked all the same.
            if p.standing != Standing::Viewer && store.is_blocked(&person)? {
                p.standing = Standing::Blocked;
                p.score = 0.0;
                p.rank = None;
            }
            let e = (paths > 0).then(|| view.explain(&person, paths));
            Ok((p, e))
        })
        .await
        .map_err(|e| ReputationError::Task(e.to_string()))??;
        Ok(Reputation { person: p, explanation: e, view: info })
    }

    /// The `n` best-ranked people in this node's view (at most [`MAX_TOP`]).
    pub async fn reputation_top(&self, n: usize) -> Result<TopReputation, ReputationError> {
        if n == 0 || n > MAX_TOP {
            return Err(ReputationError::Invalid(format!("the limit is 1 to {MAX_TOP}")));
        }
        let (view, info) = self.reputation.view().await?;
        Ok(TopReputation { people: view.top(n), view: info })
    }

    /// The current view itself, for callers that look up many people at once (deal lists).
    pub async fn reputation_view(&self) -> Result<Arc<TrustView>, ReputationError> {
        Ok(self.reputation.view().await?.0)
    }

    /// Signs and publishes a vouch for `subject` ("I know this person"): `context` says how, and it
    /// runs for `days` (default [`DEFAULT_VOUCH_DAYS`], at most [`MAX_VOUCH_DAYS`]).
    pub async fn vouch(
        &self,
        subject: &PublicKey,
        context: &str,
        days: Option<u64>,
    ) -> Result<Signed<Vouch>, ReputationError> {
        let days = days.unwrap_or(DEFAULT_VOUCH_DAYS);
        if !(1..=MAX_VOUCH_DAYS).contains(&days) {
            return Err(ReputationError::Invalid(format!("a vouch runs 1 to {MAX_VOUCH_DAYS} days")));
        }
        if subject == self.identity().public() {
            return Err(ReputationError::Invalid("you cannot vouch for yourself".into()));
        }
        let context = context.trim();
        if context.is_empty() || context.chars().count() > MAX_VOUCH_CONTEXT {
            return Err(ReputationError::Invalid(format!(
                "the context is 1 to {MAX_VOUCH_CONTEXT} characters (how you know them)"
            )));
        }
        let now = now_secs();
        let vouch = Vouch { subject: *subject, context: context.to_owned(), expires_at: now + days * DAY };
        let signed = Signed::sign(self.identity(), now, vouch)?;
        self.publish_own(&signed.clone().into_any()).await?;
        Ok(signed)
    }

    /// Revokes one of this person's records (any record they signed, co-signed ones included) and
    /// says what it did ([`RevokeEffect`]; the rules are `docs/protocol.md` section 14, revocations):
    /// - a profile, listing or vouch is erased on every node that gets the revocation;
    /// - a review or review commitment is withdrawn (revoking a commitment also drops the hidden
    ///   review behind it);
    /// - a deal step is undone if the other party has not built on it, else refused (`BuiltOn`);
    /// - an agreement or extension is annulled once both parties revoked it; one party's revocation
    ///   is recorded and shown in the deal and changes nothing else, so nobody can erase the other
    ///   party's review of them;
    /// - a proposal is withdrawn (privately, like `troc deal decline` on one's own proposal).
    ///
    /// Refused (`NotRevocable`): a withdrawal (a listing's withdrawal is permanent), a revocation
    /// (final), a proposal's decline or withdrawal (the negotiation is closed: propose again).
    pub async fn revoke(&self, record: &RecordId, reason: &str) -> Result<Revoked, ReputationError> {
        let store = self.store().clone();
        let id = *record;
        let target = tokio::task::spawn_blocking(move || store.get(&id))
            .await
            .map_err(|e| ReputationError::Task(e.to_string()))??
            .ok_or(ReputationError::NotFound(*record))?;
        let me = *self.identity().public();
        if *target.author() != me && target.cosigner() != Some(me) {
            return Err(ReputationError::NotYours(*record));
        }
        let refuse = |e: ReputationError| {
            let code = match e {
                ReputationError::BuiltOn(_) => "already_built_on",
                _ => "not_revocable",
            };
            self.deals.metrics.reject(crate::metrics::Source::Local, code);
            Err(e)
        };
        let rtype = target.record_type();
        let effect = match target.body() {
            Body::Profile(_) | Body::Listing(_) | Body::Vouch(_) => RevokeEffect::Erased,
            Body::Review(_) | Body::ReviewCommitment(_) => RevokeEffect::Withdrawn,
            Body::Withdrawal(_) => {
                return refuse(ReputationError::NotRevocable(
                    "a withdrawal is permanent: publish the listing again under a new key",
                ));
            }
            Body::Revocation(_) => return refuse(ReputationError::NotRevocable("a revocation is final")),
            Body::Proposal(_) => {
                let record = self.close_proposal(*record, reason.trim().to_owned()).await.map_err(deal_error)?;
                return Ok(Revoked { record, effect: RevokeEffect::ProposalWithdrawn });
            }
            Body::Cancellation(c)
                if matches!(
                    c.reason,
                    troc_protocol::CancelReason::Declined | troc_protocol::CancelReason::Withdrawn
                ) =>
            {
                return refuse(ReputationError::NotRevocable(
                    "a declined or withdrawn proposal stays closed: propose again",
                ));
            }
            Body::Agreement(a) => {
                let other = if *target.author() == me { a.counterparty } else { *target.author() };
                self.cosigned_effect(target.id(), record, &other).await?
            }
            Body::Extension(e) => {
                let other = if *target.author() == me { e.counterparty } else { *target.author() };
                self.cosigned_effect(e.agreement, record, &other).await?
            }
            body => {
                let Some(deal) = crate::deals::state::deal_of(body) else {
                    return refuse(ReputationError::NotRevocable("this record cannot be revoked"));
                };
                let agreement = self
                    .store()
                    .get(&deal)?
                    .and_then(|a| a.downcast::<troc_protocol::Agreement>().ok())
                    .ok_or(ReputationError::NotFound(deal))?;
                let other = if *agreement.author() == me { agreement.body().counterparty } else { *agreement.author() };
                let records = self.deal_records_of(deal).await?;
                if crate::deals::state::built_on(&target, &records, &other) {
                    return refuse(ReputationError::BuiltOn(rtype.name()));
                }
                RevokeEffect::Undone
            }
        };
        let revocation = Revocation { target_author: me, target: *record, reason: reason.trim().to_owned() };
        let signed = Signed::sign(self.identity(), now_secs(), revocation)?;
        self.publish_own(&signed.clone().into_any()).await?;
        if let Body::ReviewCommitment(c) = target.body() {
            self.store().hidden_review_remove(&c.review)?;
        }
        Ok(Revoked { record: signed.into_any(), effect })
    }

    /// Revoking the co-signed `record` of deal `agreement`: annulled if `other` revoked it already.
    async fn cosigned_effect(
        &self,
        agreement: RecordId,
        record: &RecordId,
        other: &PublicKey,
    ) -> Result<RevokeEffect, ReputationError> {
        let records = self.deal_records_of(agreement).await?;
        Ok(if crate::deals::state::revokers(record, &records).contains(other) {
            RevokeEffect::Annulled
        } else {
            RevokeEffect::WaitingForOtherParty
        })
    }

    /// The records naming the deal `agreement` (and their revocations).
    async fn deal_records_of(&self, agreement: RecordId) -> Result<Vec<SignedRecord>, ReputationError> {
        let store = self.store().clone();
        Ok(tokio::task::spawn_blocking(move || store.records_referencing(&agreement))
            .await
            .map_err(|e| ReputationError::Task(e.to_string()))??)
    }

    /// The live vouches this person gave and received (blocked people's left out), newest first,
    /// at most [`MAX_VOUCHES_LISTED`] each.
    pub fn vouches(&self) -> Result<Vouches, ReputationError> {
        let store = self.store();
        let me = *self.identity().public();
        let now = now_secs();
        let blocked = store.blocked()?;
        let mut given: Vec<VouchInfo> = store
            .by_author(&me, store.quotas().max_records_per_author)?
            .into_iter()
            .filter_map(|r| r.downcast::<Vouch>().ok())
            .filter(|v| v.body().expires_at > now && !blocked.contains(&v.body().subject))
            .map(|v| VouchInfo::of(&v))
            .take(MAX_VOUCHES_LISTED)
            .collect();
        given.sort_by_key(|v| std::cmp::Reverse((v.created_at, v.id)));
        let mut received: Vec<VouchInfo> =
            store.vouches_of(&me, now)?.iter().filter(|v| !blocked.contains(v.author())).map(VouchInfo::of).collect();
        received.sort_by_key(|v| std::cmp::Reverse((v.created_at, v.id)));
        received.truncate(MAX_VOUCHES_LISTED);
        Ok(Vouches { given, received })
    }

    /// Publishes a record of ours: `Ok` once stored (or already there).
    async fn publish_own(&self, record: &SignedRecord) -> Result<(), ReputationError> {
        match self.publish(record).await? {
            ItemResult::Stored { .. } | ItemResult::Duplicate { .. } => Ok(()),
            ItemResult::NotKept { reason, .. } => {
                Err(ReputationError::Refused { code: reason.clone(), reason: format!("not stored: {reason}") })
            }
            ItemResult::Rejected { code, reason } => Err(ReputationError::Refused { code: code.to_owned(), reason }),
        }
    }
}

/// A deal action's error as a reputation error (revoking a proposal withdraws it).
fn deal_error(e: crate::deals::DealError) -> ReputationError {
    match e {
        crate::deals::DealError::Refused { code, reason } => ReputationError::Refused { code, reason },
        crate::deals::DealError::Record(r) => ReputationError::Record(r),
        crate::deals::DealError::Store(s) => ReputationError::Store(s),
        crate::deals::DealError::NotFound(_) => ReputationError::Invalid(e.to_string()),
        other => ReputationError::Invalid(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use troc_protocol::{Completion, Identity, Rating, Review};

    use super::*;
    use crate::store::StoreConfig;
    use crate::store::tests::{agreement, proposal, revocation, signed};

    const NOW: Timestamp = 1_700_000_000;
    const DAY: Timestamp = 86_400;

    /// The facts the service keeps, updated from the store the way a rebuild does it, see an
    /// unilateral revocation change nothing and an annulment take the deal away at once.
    #[test]
    fn trust_facts_take_revocations_and_annulments_from_the_store_at_the_next_rebuild() {
        assert!(TRUST_TYPES.contains(&RecordType::Extension) && TRUST_TYPES.contains(&RecordType::Revocation));
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path().join("db"))).expect("open");
        let (alice, bob) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let p = proposal(&bob, &alice, NOW);
        let ag = agreement(&alice, &bob, p.id(), NOW + 1);
        let done = signed(&alice, NOW + 10, Completion { agreement: ag.id(), note: String::new() });
        let review = signed(
            &bob,
            NOW + 11,
            Review {
                agreement: ag.id(),
                subject: *alice.public(),
                rating: Rating::Positive,
                facets: vec![],
                text: String::new(),
                nonce: troc_protocol::Nonce([1; 16]),
            },
        );
        let out = store.apply(&[p, ag.clone(), done, review], NOW).expect("apply");
        assert!(out.iter().all(|o| o.is_stored()), "{out:?}");
        let now = NOW + DAY;
        let facts = update_facts(&store, None, &[]).expect("load");
        assert!(facts.build(now).deal(&ag.id()).is_some());
        assert_eq!(facts.build(now).opinions().len(), 2);

        // Alice alone revokes the agreement: recorded, nothing else.
        let ra = revocation(&alice, ag.id(), NOW + 12);
        assert!(store.apply(std::slice::from_ref(&ra), NOW).expect("apply")[0].is_stored());
        let facts = update_facts(&store, Some(facts), &[ra.id()]).expect("update");
        assert_eq!(facts.build(now).opinions().len(), 2);

        // Bob too: the store annuls it and keeps the revocation, which the facts apply at once.
        let rb = revocation(&bob, ag.id(), NOW + 13);
        assert!(store.apply(std::slice::from_ref(&rb), NOW).expect("apply")[0].is_stored());
        assert!(!store.contains(&ag.id()).expect("contains"));
        let facts = update_facts(&store, Some(facts), &[rb.id()]).expect("update");
        let graph = facts.build(now);
        assert!(graph.deal(&ag.id()).is_none() && graph.opinions().is_empty());
        // A full reload agrees.
        let reloaded = update_facts(&store, None, &[]).expect("reload").build(now);
        assert!(reloaded.deals().len() == 0 && reloaded.opinions().is_empty());
    }
}
