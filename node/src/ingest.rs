//! The one ingest path, for every source (gossip, catch-up, the local user):
//! decode → check (clock, topic, publisher, per-author rate) → verify (batch) → store (dedup, stale
//! revisions, withdrawals; one transaction per batch) → verdicts and events.
//!
//! One writer thread owns every write to the store, fed by a bounded channel: jobs are drained in
//! batches so signature verification can use ed25519 batch verification and the store writes a batch
//! in one transaction. A full queue is back-pressure: gossip that finds it full is ignored (catch-up
//! brings it back later), local publishing waits.
//!
//! Gossip verdicts go back to the swarm task, which reports them to gossipsub: `Accept` forwards the
//! message, `Reject` penalises the peer that sent it, `Ignore` drops it without penalty (duplicates,
//! stale revisions, rate limits, a full queue).

use std::time::Instant;

use libp2p::PeerId;
use libp2p::gossipsub::{MessageAcceptance, MessageId, TopicHash};
use tokio::sync::{broadcast, mpsc, oneshot};
use troc_protocol::{PublicKey, RecordBody, RecordError, RecordId, Unverified};

use crate::events::NodeEvent;
use crate::limits::RateLimiter;
use crate::metrics::{Metrics, Source};
use crate::store::{Outcome, Store};
use crate::topics;
use crate::{config::Limits, now_secs};

/// Where a batch of records came from, and who to tell.
#[derive(Debug)]
pub(crate) enum Origin {
    /// One gossip message.
    Gossip { peer: PeerId, msg_id: MessageId, topic: TopicHash, publisher: Option<PeerId> },
    /// Records fetched or pushed during catch-up with `peer`.
    Sync { peer: PeerId },
    /// Records the local user signed.
    Local,
}

impl Origin {
    /// The peer that sent the records, if any.
    fn peer(&self) -> Option<PeerId> {
        match self {
            Origin::Gossip { peer, .. } | Origin::Sync { peer } => Some(*peer),
            Origin::Local => None,
        }
    }

    fn source(&self) -> Source {
        match self {
            Origin::Gossip { .. } => Source::Gossip,
            Origin::Sync { .. } => Source::Sync,
            Origin::Local => Source::Local,
        }
    }
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    Stored {
        id: RecordId,
        replaced: Option<RecordId>,
    },
    Duplicate {
        id: RecordId,
    },
    /// Verified, but not kept: an older revision, withdrawn, revoked, expired, or over a quota.
    NotKept {
        id: RecordId,
        reason: String,
    },
    /// Refused before it was verified or stored.
    Rejected {
        code: &'static str,
        reason: String,
    },
}

impl ItemResult {
    pub fn is_stored(&self) -> bool {
        matches!(self, ItemResult::Stored { .. })
    }
}

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) enum Job {
    Records {
        origin: Box<Origin>,
        items: Vec<Vec<u8>>,
        reply: Option<oneshot::Sender<Vec<ItemResult>>>,
    },
    /// Flush and close the store, then answer. Sent last, at shutdown.
    Close {
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Prune expired records.
    Prune,
}

/// Messages from the writer to the swarm task.
#[derive(Debug)]
pub(crate) enum ToSwarm {
    /// The verdict on a gossip message.
    Verdict { msg_id: MessageId, peer: PeerId, acceptance: MessageAcceptance, code: Option<&'static str> },
    /// A local record was stored: publish it on its topic.
    Publish { scope: String, bytes: Vec<u8> },
    /// The store changed (for caches of sync sets).
    Changed,
}

pub(crate) struct Writer {
    /// This node's person: only their own records (or co-signed ones) are gossiped from here;
    /// other people's records that arrive locally (an import) spread by catch-up instead, since
    /// gossip must come from the author.
    pub local: PublicKey,
    pub store: Store,
    pub metrics: Metrics,
    pub limits: Limits,
    pub rx: mpsc::Receiver<Job>,
    pub to_swarm: mpsc::Sender<ToSwarm>,
    pub events: broadcast::Sender<NodeEvent>,
}

/// One item on its way through a batch.
struct Pending {
    job: usize,
    slot: usize,
    unverified: Unverified,
}

impl Writer {
    /// Runs until a `Close` job arrives or every sender is gone. Runs on its own thread.
    pub fn run(mut self) {
        let mut author_rate: RateLimiter<PublicKey> = RateLimiter::new(self.limits.author_gossip, 100_000);
        loop {
            let Some(first) = self.rx.blocking_recv() else {
                // Every handle is gone without a Close: close the store anyway.
                let _ = self.store.flush();
                return;
            };
            let mut jobs = vec![first];
            let mut batch_records: usize = jobs[0].len();
            while batch_records < self.limits.ingest_batch {
                match self.rx.try_recv() {
                    Ok(job) => {
                        batch_records += job.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            let mut close = None;
            let mut records = Vec::new();
            for job in jobs {
                match job {
                    Job::Records { origin, items, reply } => records.push((*origin, items, reply)),
                    Job::Close { reply } => close = Some(reply),
                    Job::Prune => self.prune(),
                }
            }
            if !records.is_empty() {
                self.process(records, &mut author_rate);
            }
            if let Some(reply) = close {
                // Close (flush, then mark the store cleanly closed so the next start skips the full
                // re-verification), and drop our handle on the database before answering, so that
                // once shutdown returns the writer no longer holds sled's lock.
                let Writer { store, .. } = self;
                let result = store.close().map_err(|e| e.to_string());
                let _ = reply.send(result);
                return;
            }
        }
    }

    fn prune(&self) {
        match self.store.prune(now_secs()) {
            Ok(report) => tracing::debug!(?report, "pruned expired records"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }

    #[allow(clippy::type_complexity)]
    fn process(
        &mut self,
        jobs: Vec<(Origin, Vec<Vec<u8>>, Option<oneshot::Sender<Vec<ItemResult>>>)>,
        author_rate: &mut RateLimiter<PublicKey>,
    ) {
        let now = now_secs();
        let instant = Instant::now();
        let mut results: Vec<Vec<Option<ItemResult>>> =
            jobs.iter().map(|(_, items, _)| vec![None; items.len()]).collect();
        let mut pending = Vec::new();

        // 1. Decode and the cheap checks.
        for (j, (origin, items, _)) in jobs.iter().enumerate() {
            for (slot, bytes) in items.iter().enumerate() {
                match self.precheck(origin, bytes, now, instant, author_rate) {
                    Ok(unverified) => pending.push(Pending { job: j, slot, unverified }),
                    Err((code, reason)) => {
                        tracing::debug!(peer = ?origin.peer(), code, %reason, "record refused");
                        self.metrics.reject(origin.source(), code);
                        results[j][slot] = Some(ItemResult::Rejected { code, reason });
                    }
                }
            }
        }

        // 2. Verify, in one batch.
        let (places, unverified): (Vec<(usize, usize)>, Vec<Unverified>) =
            pending.into_iter().map(|p| ((p.job, p.slot), p.unverified)).unzip();
        let verified = troc_protocol::verify_batch(unverified);
        let mut good = Vec::with_capacity(verified.len());
        let mut good_places = Vec::with_capacity(verified.len());
        for ((j, slot), v) in places.into_iter().zip(verified) {
            match v {
                Ok(record) => {
                    good.push(record);
                    good_places.push((j, slot));
                }
                Err(e) => {
                    self.metrics.reject(jobs[j].0.source(), e.code());
                    results[j][slot] = Some(ItemResult::Rejected { code: e.code(), reason: e.to_string() });
                }
            }
        }

        // 3. Store, in one transaction.
        let mut changed = false;
        if !good.is_empty() {
            match self.store.apply(&good, now) {
                Ok(outcomes) => {
                    for ((record, (j, slot)), outcome) in good.iter().zip(&good_places).zip(outcomes) {
                        let source = jobs[*j].0.source();
                        let id = record.id();
                        let result = match outcome {
                            Outcome::Stored { replaced, .. } => {
                                changed = true;
                                self.metrics.outcome(source, "stored");
                                let scope = topics::scope_of(record.body());
                                let _ = self.events.send(NodeEvent::stored(record, scope.clone(), source, replaced));
                                let ours =
                                    record.author() == &self.local || record.body().cosigner() == Some(&self.local);
                                if matches!(jobs[*j].0, Origin::Local)
                                    && ours
                                    && let Some(scope) = scope
                                {
                                    // Blocking is fine here: the swarm task never waits on us.
                                    let _ = self
                                        .to_swarm
                                        .blocking_send(ToSwarm::Publish { scope, bytes: record.bytes().to_vec() });
                                }
                                ItemResult::Stored { id, replaced }
                            }
                            Outcome::Duplicate => {
                                self.metrics.outcome(source, "duplicate");
                                ItemResult::Duplicate { id }
                            }
                            Outcome::Stale(reason) => {
                                self.metrics.outcome(source, "stale");
                                ItemResult::NotKept { id, reason: format!("{reason:?}") }
                            }
                            Outcome::Refused(reason) => {
                                self.metrics.reject(source, "quota");
                                ItemResult::NotKept { id, reason: format!("{reason:?}") }
                            }
                        };
                        results[*j][*slot] = Some(result);
                    }
                }
                Err(e) => {
                    // The store failed (disk full, I/O): nothing of this batch was written. Gossip is
                    // ignored (not the sender's fault), callers hear the error.
                    tracing::error!(error = %e, "store write failed");
                    for (j, slot) in good_places {
                        results[j][slot] = Some(ItemResult::Rejected { code: "store_error", reason: e.to_string() });
                    }
                }
            }
        }
        if changed {
            let _ = self.to_swarm.blocking_send(ToSwarm::Changed);
        }

        // 4. Verdicts and replies.
        for ((origin, _, reply), results) in jobs.into_iter().zip(results) {
            let results: Vec<ItemResult> = results
                .into_iter()
                .map(|r| r.unwrap_or(ItemResult::Rejected { code: "malformed", reason: "not processed".into() }))
                .collect();
            if let Origin::Gossip { peer, msg_id, .. } = origin {
                let (acceptance, code) = gossip_verdict(results.first());
                let _ = self.to_swarm.blocking_send(ToSwarm::Verdict { msg_id, peer, acceptance, code });
            }
            if let Some(reply) = reply {
                let _ = reply.send(results);
            }
        }
    }

    /// Decoding and every check that does not need the signature, cheapest first.
    fn precheck(
        &self,
        origin: &Origin,
        bytes: &[u8],
        now: u64,
        instant: Instant,
        author_rate: &mut RateLimiter<PublicKey>,
    ) -> Result<Unverified, (&'static str, String)> {
        let err = |e: RecordError| (e.code(), e.to_string());
        let unverified = troc_protocol::decode(bytes).map_err(err)?;
        unverified.check_time(now).map_err(err)?;
        let scope = topics::scope_of(unverified.body());
        match origin {
            Origin::Local => {}
            Origin::Sync { .. } => {
                if scope.is_none() {
                    return Err(("not_public", "private records are never synchronised".into()));
                }
            }
            Origin::Gossip { topic, publisher, .. } => {
                let Some(scope) = scope else {
                    return Err(("not_public", "private records are never gossiped".into()));
                };
                if topics::topic(&scope).hash() != *topic {
                    return Err((
                        "wrong_topic",
                        format!("a {} record does not belong on {topic}", unverified.header().record_type),
                    ));
                }
                let author = unverified.header().author;
                let cosigner = unverified.body().cosigner();
                let publisher_ok = publisher
                    .is_some_and(|p| p == author.to_peer_id() || cosigner.is_some_and(|c| p == c.to_peer_id()));
                if !publisher_ok {
                    return Err(("wrong_publisher", "gossip must be published by the record's author".into()));
                }
                if !author_rate.check(&author, 1.0, instant) {
                    return Err(("author_rate_limited", format!("author {} is over its rate", author.short())));
                }
            }
        }
        Ok(unverified)
    }
}

impl Job {
    fn len(&self) -> usize {
        match self {
            Job::Records { items, .. } => items.len(),
            _ => 1,
        }
    }
}

/// Reject what is the sender's fault (forged, malformed, misrouted, from the future); ignore what an
/// honest peer can forward (duplicates, revisions that lost a race, expiry at the boundary, our
/// own limits).
fn gossip_verdict(result: Option<&ItemResult>) -> (MessageAcceptance, Option<&'static str>) {
    match result {
        Some(ItemResult::Stored { .. }) => (MessageAcceptance::Accept, None),
        Some(ItemResult::Duplicate { .. }) | Some(ItemResult::NotKept { .. }) | None => {
            (MessageAcceptance::Ignore, None)
        }
        Some(ItemResult::Rejected { code, .. }) if senders_fault(code) => (MessageAcceptance::Reject, Some(code)),
        Some(ItemResult::Rejected { code, .. }) => (MessageAcceptance::Ignore, Some(code)),
    }
}

/// Whether a rejection is the fault of the peer that sent the record (forged, malformed, misrouted,
/// from the future ...) rather than something an honest peer can send (a listing that expired on the
/// way, an author over our rate, our own queue or store).
pub(crate) fn senders_fault(code: &str) -> bool {
    !matches!(code, "expired" | "author_rate_limited" | "store_error" | "queue_full")
}
