//! The one ingest path, for every source (gossip, catch-up, the local user):
//! decode → check (clock, topic, publisher, already known, per-author rate) → verify (batch) →
//! store (dedup, stale revisions, withdrawals; one transaction per batch) → verdicts and events.
//!
//! Two stages, each on its own thread, joined by a bounded channel, so that verifying batch n+1
//! overlaps storing batch n:
//! - the **verification stage** drains jobs from the bounded ingest queue in batches (so signature
//!   verification can use ed25519 batch verification), runs every check, skips what the store
//!   already has or refuses *before* verifying it (an in-memory lookup), batch-verifies the rest and
//!   prepares listings for the search index (their words), then hands the batch on;
//! - the **writer** is the only writer of the store: it applies each batch in one transaction,
//!   flushes when the batch holds records the local user signed (one flush for the whole batch:
//!   group commit, so a local caller hears back only once its records are on disk), then sends
//!   events, verdicts and replies.
//!
//! A full queue is back-pressure: gossip that finds it full is ignored (catch-up brings it back
//! later), local publishing waits. The channel between the stages holds at most
//! [`STAGED_BATCHES`] batches, so a slow disk slows verification down instead of piling up work.
//!
//! Gossip verdicts go back to the swarm task, which reports them to gossipsub: `Accept` forwards the
//! message, `Reject` penalises the peer that sent it, `Ignore` drops it without penalty (duplicates,
//! stale revisions, rate limits, a full queue).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::gossipsub::{MessageAcceptance, MessageId, TopicHash};
use tokio::sync::{broadcast, mpsc, oneshot};
use troc_protocol::{PublicKey, RecordBody, RecordError, RecordId, Unverified};

use crate::events::NodeEvent;
use crate::limits::{NewAuthors, RateLimiter};
use crate::metrics::{Metrics, Source};
use crate::store::{Outcome, Prepared, RefuseReason, StaleReason, Store};
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
    /// A record sent directly by the other party of a deal (`/troc/deal/1`).
    Deal { peer: PeerId },
}

impl Origin {
    /// The peer that sent the records, if any.
    fn peer(&self) -> Option<PeerId> {
        match self {
            Origin::Gossip { peer, .. } | Origin::Sync { peer } | Origin::Deal { peer } => Some(*peer),
            Origin::Local => None,
        }
    }

    fn source(&self) -> Source {
        match self {
            Origin::Gossip { .. } => Source::Gossip,
            Origin::Sync { .. } => Source::Sync,
            Origin::Local => Source::Local,
            Origin::Deal { .. } => Source::Deal,
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

/// Batches verified and waiting for the writer, at most.
pub const STAGED_BATCHES: usize = 2;

/// The ingest stages. `run` takes over the calling thread (the writer) and starts the verification
/// stage on another.
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

/// A job's reply channel and where it came from.
type JobHead = (Origin, Option<oneshot::Sender<Vec<ItemResult>>>);

/// A job's records, with where they came from and who to tell.
type RecordsJob = (Origin, Vec<Vec<u8>>, Option<oneshot::Sender<Vec<ItemResult>>>);

/// What the verification stage hands the writer, in queue order.
enum Staged {
    Batch(Verified),
    Prune,
    Close { reply: oneshot::Sender<Result<(), String>> },
}

/// A batch that went through every check and the signature verification.
struct Verified {
    jobs: Vec<JobHead>,
    /// Per job, per item: the result so far (`None`: verified, waiting for the store).
    results: Vec<Vec<Option<ItemResult>>>,
    /// The verified records, prepared for the store, and their `(job, item)`.
    good: Vec<Prepared>,
    places: Vec<(usize, usize)>,
    now: u64,
}

/// How long a node that started with an empty store counts the authors that catch-up brings as
/// settled rather than new (`Limits::new_author_gossip`): a node joining a community meets everyone
/// who was there before it, and without this it would treat all of them as new for an hour, their
/// gossip sharing the budget of new authors. The first catch-up runs as soon as a peer connects and
/// takes seconds (`docs/performance.md`, Catch-up); ten minutes leave room for a slow start. Authors
/// first met by gossip are new all the same.
const JOINING: Duration = Duration::from_secs(600);

/// The verification stage: owns the ingest queue and the per-author gossip rate.
struct Verifier {
    /// This node's person (private deal records must be addressed to them).
    local: PublicKey,
    store: Store,
    metrics: Metrics,
    limits: Limits,
    rx: mpsc::Receiver<Job>,
    author_rate: RateLimiter<PublicKey>,
    /// The gossip budget that authors new to this node share.
    new_authors: NewAuthors<PublicKey>,
    /// Until when this node is joining its communities: it started with an empty store, and the
    /// authors its first catch-up brings were there before it (see [`JOINING`]).
    joining_until: Option<Instant>,
    /// Per peer, the records by new authors its catch-up may bring (`Limits::new_author_sync`).
    sync_new: RateLimiter<PeerId>,
    /// Batches handed to the writer and not yet stored (see [`Verifier::batch_limit`]).
    pending: Arc<AtomicUsize>,
}

/// The writer stage: the only writer of the store.
struct Storer {
    pending: Arc<AtomicUsize>,
    local: PublicKey,
    store: Store,
    metrics: Metrics,
    to_swarm: mpsc::Sender<ToSwarm>,
    events: broadcast::Sender<NodeEvent>,
}

impl Writer {
    /// Runs until a `Close` job arrives or every sender is gone: the writer on this thread, the
    /// verification stage on a thread of its own (or, if that thread cannot start, both stages in
    /// turn on this one).
    pub fn run(self) {
        let Writer { local, store, metrics, limits, rx, to_swarm, events } = self;
        let author_rate = RateLimiter::new(limits.author_gossip, 100_000);
        let new_authors = NewAuthors::new(limits.new_author_gossip, limits.new_author_settle, limits.max_new_authors);
        let joining_until = store.is_empty().then(|| Instant::now() + JOINING);
        let sync_new = RateLimiter::new(limits.new_author_sync, 10_000);
        let pending = Arc::new(AtomicUsize::new(0));
        let verifier = Verifier {
            local,
            store: store.clone(),
            metrics: metrics.clone(),
            limits,
            rx,
            author_rate,
            new_authors,
            joining_until,
            sync_new,
            pending: Arc::clone(&pending),
        };
        let mut storer = Storer { pending, local, store, metrics, to_swarm, events };
        let (tx, staged) = std::sync::mpsc::sync_channel::<Staged>(STAGED_BATCHES);
        // The verifier goes to its thread through this cell, so that it can be taken back if the
        // thread cannot start.
        let cell = Arc::new(Mutex::new(Some(verifier)));
        let for_thread = Arc::clone(&cell);
        let started = std::thread::Builder::new().name("troc-verify".into()).spawn(move || {
            let verifier = for_thread.lock().ok().and_then(|mut v| v.take());
            if let Some(verifier) = verifier {
                verifier.run(|s| tx.send(s).is_ok());
            }
        });
        let mut close = None;
        match started {
            Ok(thread) => {
                while let Ok(s) = staged.recv() {
                    match s {
                        Staged::Close { reply } => {
                            close = Some(reply);
                            break;
                        }
                        s => storer.handle(s),
                    }
                }
                // The verifier stops right after handing on a Close (or it already stopped: every
                // sender is gone). Waiting for it means its handle on the store is dropped before
                // the store is closed and shutdown answered.
                if thread.join().is_err() {
                    tracing::error!("the verification thread panicked");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not start the verification thread: verifying on the writer thread");
                let verifier = cell.lock().ok().and_then(|mut v| v.take());
                if let Some(verifier) = verifier {
                    verifier.run(|s| match s {
                        Staged::Close { reply } => {
                            close = Some(reply);
                            false
                        }
                        s => {
                            storer.handle(s);
                            true
                        }
                    });
                }
            }
        }
        match close {
            Some(reply) => {
                // Close (flush, then mark the store cleanly closed so the next start skips the full
                // re-verification), and drop our handle on the database before answering, so that
                // once shutdown returns the writer no longer holds sled's lock.
                let Storer { store, .. } = storer;
                let result = store.close().map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            None => {
                // Every handle is gone without a Close: flush anyway.
                if let Err(e) = storer.store.flush() {
                    tracing::warn!(error = %e, "final flush failed");
                }
            }
        }
    }
}

/// Batches smaller than this are verified on one thread (a second one costs more than it saves).
const SPLIT_VERIFY_MIN: usize = 64;

/// `verify_batch` of a batch, in two halves on two threads when the machine has a core to spare
/// beyond the two stages of the pipeline (three or more). On two cores it was measured slower: three
/// busy threads on two cores (paired ratio 0.44-0.46 with it, 0.48-0.49 without, on a quiet machine;
/// `docs/performance.md`, section 2). Results keep the input's order.
fn verify_split(
    unverified: Vec<troc_protocol::Unverified>,
) -> Vec<Result<troc_protocol::SignedRecord, troc_protocol::RecordError>> {
    static CORES: std::sync::LazyLock<usize> =
        std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if unverified.len() < SPLIT_VERIFY_MIN || *CORES < 3 {
        return troc_protocol::verify_batch(unverified);
    }
    let mut first = unverified;
    // Shared so that, if no thread can be spawned, this one still has the second half.
    let second = std::sync::Mutex::new(Some(first.split_off(first.len() / 2)));
    let take = || second.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
    std::thread::scope(|s| {
        let other = std::thread::Builder::new().name("troc-verify-2".into()).spawn_scoped(s, || {
            let half = take();
            troc_protocol::verify_batch(half)
        });
        let mut out = troc_protocol::verify_batch(first);
        match other {
            Ok(handle) => match handle.join() {
                Ok(rest) => out.extend(rest),
                // verify_batch returns errors and does not panic; if it did, pass the panic on
                // rather than report records as verified or not at random.
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread to be had (resource limits): verify the second half here.
            Err(_) => out.extend(troc_protocol::verify_batch(take())),
        }
        out
    })
}

impl Verifier {
    /// Drains the queue in batches, checks and verifies them, and hands them to `sink` in order.
    /// Stops after a `Close`, when every sender is gone, or when `sink` refuses (the writer stopped).
    fn run(mut self, mut sink: impl FnMut(Staged) -> bool) {
        loop {
            let Some(first) = self.rx.blocking_recv() else { return };
            let mut jobs = vec![first];
            let mut batch_records: usize = jobs[0].len();
            let limit = self.batch_limit();
            while batch_records < limit {
                match self.rx.try_recv() {
                    Ok(job) => {
                        batch_records += job.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            // Keep the queue's order: records before a Prune or Close are handed on before it.
            let mut records: Vec<RecordsJob> = Vec::new();
            for job in jobs {
                let control = match job {
                    Job::Records { origin, items, reply } => {
                        records.push((*origin, items, reply));
                        continue;
                    }
                    Job::Prune => Staged::Prune,
                    Job::Close { reply } => Staged::Close { reply },
                };
                let close = matches!(control, Staged::Close { .. });
                if !records.is_empty() && !sink(Staged::Batch(self.verify(std::mem::take(&mut records)))) {
                    return;
                }
                if !sink(control) || close {
                    return;
                }
            }
            if !records.is_empty() && !sink(Staged::Batch(self.verify(records))) {
                return;
            }
        }
    }

    /// How many records to gather into the next batch. A full batch (`ingest_batch`) when the
    /// writer has work, a quarter of one when it is idle: at the start of a burst the writer would
    /// otherwise wait for a whole batch to be verified before it can start, and the first records
    /// of the burst would wait with it. (Smaller batches verify a little less efficiently, so only
    /// the first one of a burst is small.) A job is never split: the first job is always taken whole.
    fn batch_limit(&self) -> usize {
        if self.pending.load(Ordering::Acquire) == 0 {
            self.limits.ingest_batch.div_ceil(4)
        } else {
            self.limits.ingest_batch
        }
    }

    /// Checks and verifies a batch of jobs, and counts it as pending for the writer.
    fn verify(&mut self, jobs: Vec<RecordsJob>) -> Verified {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let now = now_secs();
        let instant = Instant::now();
        let mut results: Vec<Vec<Option<ItemResult>>> =
            jobs.iter().map(|(_, items, _)| vec![None; items.len()]).collect();
        let mut places = Vec::new();
        let mut unverified = Vec::new();

        // 1. Decode, the cheap checks, and what the store already knows.
        for (j, (origin, items, _)) in jobs.iter().enumerate() {
            for (slot, bytes) in items.iter().enumerate() {
                match self.precheck(origin, bytes, now, instant) {
                    Ok(u) => {
                        places.push((j, slot));
                        unverified.push(u);
                    }
                    Err(Early::Rejected(code, reason)) => {
                        tracing::debug!(peer = ?origin.peer(), code, %reason, "record refused");
                        self.metrics.reject(origin.source(), code);
                        results[j][slot] = Some(ItemResult::Rejected { code, reason });
                    }
                    Err(Early::Known(id, outcome)) => {
                        results[j][slot] = Some(not_stored(&self.metrics, origin.source(), id, *outcome));
                    }
                }
            }
        }

        // 2. Verify, in one batch. (Listings' search documents are made by the writer: on two cores
        // this stage is the longer one; see `docs/performance.md`, section Ingest.)
        let mut good = Vec::with_capacity(unverified.len());
        let mut good_places = Vec::with_capacity(unverified.len());
        for ((j, slot), v) in places.into_iter().zip(verify_split(unverified)) {
            match v {
                Ok(record) => {
                    if !self.joining(instant) && matches!(jobs[j].0, Origin::Sync { .. }) {
                        // Met by catch-up: new here until it settles (verified first, so that
                        // forged records cannot fill the table). While the node joins, what its
                        // communities already hold is settled instead, like a store's at start.
                        let author = record.header().author;
                        self.new_authors.meet(&author, self.store.has_records_by(&author), instant);
                    }
                    good.push(Prepared::deferred(record));
                    good_places.push((j, slot));
                }
                Err(e) => {
                    self.metrics.reject(jobs[j].0.source(), e.code());
                    results[j][slot] = Some(ItemResult::Rejected { code: e.code(), reason: e.to_string() });
                }
            }
        }
        let jobs = jobs.into_iter().map(|(origin, _, reply)| (origin, reply)).collect();
        Verified { jobs, results, good, places: good_places, now }
    }

    /// Whether the node is still joining its communities at `instant` (see [`JOINING`]).
    fn joining(&self, instant: Instant) -> bool {
        self.joining_until.is_some_and(|until| instant < until)
    }

    /// Decoding and every check that does not need the signature, cheapest first.
    fn precheck(&mut self, origin: &Origin, bytes: &[u8], now: u64, instant: Instant) -> Result<Unverified, Early> {
        let err = |e: RecordError| Early::Rejected(e.code(), e.to_string());
        let unverified = troc_protocol::decode(bytes).map_err(err)?;
        unverified.check_time(now).map_err(err)?;
        let scope = topics::scope_of(unverified.body());
        match origin {
            Origin::Local => {}
            Origin::Deal { peer } => {
                check_deal_sender(&unverified, peer, &self.local).map_err(|(code, why)| Early::Rejected(code, why))?;
            }
            Origin::Sync { .. } => {
                if scope.is_none() {
                    return Err(Early::Rejected("not_public", "private records are never synchronised".into()));
                }
            }
            Origin::Gossip { topic, publisher, .. } => {
                let Some(scope) = scope else {
                    return Err(Early::Rejected("not_public", "private records are never gossiped".into()));
                };
                if topics::topic(&scope).hash() != *topic {
                    return Err(Early::Rejected(
                        "wrong_topic",
                        format!("a {} record does not belong on {topic}", unverified.header().record_type),
                    ));
                }
                let author = unverified.header().author;
                let cosigner = unverified.body().cosigner();
                let publisher_ok = publisher
                    .is_some_and(|p| p == author.to_peer_id() || cosigner.is_some_and(|c| p == c.to_peer_id()));
                if !publisher_ok {
                    return Err(Early::Rejected(
                        "wrong_publisher",
                        "gossip must be published by the record's author".into(),
                    ));
                }
            }
        }
        // Stored already, or refused: what the store would answer, without paying for the
        // signature. (The id covers the whole content, so these are the same record; only its
        // signature bytes could differ, and the stored copy's were verified.)
        let id = unverified.id();
        if let Some(outcome) = self.store.known(&id, &unverified.header().author, now) {
            return Err(Early::Known(id, Box::new(outcome)));
        }
        if let Origin::Gossip { peer, .. } = origin {
            let author = unverified.header().author;
            if !self.author_rate.check(&author, 1.0, instant) {
                // Forwarded by someone else, it may have reached us faster than it left its author
                // (an honest peer forwards what passed its own count): ignored, no penalty. Sent by
                // the author's own node, it breaks the protocol: a node paces its own gossip below
                // every peer's per-author rate (`own_gossip_pace`), so this is a flooder.
                if *peer == author.to_peer_id() {
                    return Err(Early::Rejected(
                        "own_rate_exceeded",
                        format!("author {} sent more than its rate itself", author.short()),
                    ));
                }
                return Err(Early::Rejected(
                    "author_rate_limited",
                    format!("author {} is over its rate", author.short()),
                ));
            }
            if !self.new_authors.admit(&author, self.store.has_records_by(&author), instant) {
                return Err(Early::Rejected(
                    "new_author_rate_limited",
                    format!("author {} is new here and new authors are over their shared rate", author.short()),
                ));
            }
        }
        if let Origin::Sync { peer } = origin
            && !self.joining(instant)
        {
            let author = unverified.header().author;
            if self.new_authors.is_new(&author, self.store.has_records_by(&author), instant)
                && !self.sync_new.check(peer, 1.0, instant)
            {
                return Err(Early::Rejected(
                    "new_author_rate_limited",
                    format!(
                        "author {} is new here and this peer's catch-up brought its share of new authors",
                        author.short()
                    ),
                ));
            }
        }
        Ok(unverified)
    }
}

/// The check of a record sent directly (`/troc/deal/1`) by `peer` to this node (`local`): only the
/// author (or co-signer) sends a deal record directly, and a private one only to the other party.
/// A function of its own so that the `deal` fuzz target runs this very check.
pub(crate) fn check_deal_sender(
    unverified: &Unverified,
    peer: &PeerId,
    local: &PublicKey,
) -> Result<(), (&'static str, String)> {
    let header = unverified.header();
    let from_party =
        header.author.to_peer_id() == *peer || unverified.body().cosigner().is_some_and(|c| c.to_peer_id() == *peer);
    if !from_party {
        return Err(("author_mismatch", "a deal message must come from the record's author".into()));
    }
    if let troc_protocol::Body::Proposal(p) = unverified.body()
        && p.counterparty != *local
    {
        return Err(("not_for_us", "a proposal for someone else".into()));
    }
    Ok(())
}

/// Why an item stops before verification.
enum Early {
    /// Refused, with its code and reason.
    Rejected(&'static str, String),
    /// The store already has it, or refuses its id.
    Known(RecordId, Box<Outcome>),
}

/// The result of an item the store did not store, counted.
fn not_stored(metrics: &Metrics, source: Source, id: RecordId, outcome: Outcome) -> ItemResult {
    match outcome {
        Outcome::Stored { replaced, .. } => ItemResult::Stored { id, replaced },
        Outcome::Duplicate => {
            metrics.outcome(source, "duplicate");
            ItemResult::Duplicate { id }
        }
        Outcome::Stale(reason @ (StaleReason::UnknownDeal | StaleReason::DealNotEnded)) => {
            metrics.outcome(source, reason.code());
            ItemResult::NotKept { id, reason: reason.code().to_owned() }
        }
        Outcome::Stale(reason) => {
            metrics.outcome(source, "stale");
            ItemResult::NotKept { id, reason: format!("{reason:?}") }
        }
        Outcome::Refused(RefuseReason::Deal(d)) => {
            metrics.reject(source, d.code());
            ItemResult::Rejected { code: d.code(), reason: format!("refused by the deal rules: {}", d.code()) }
        }
        Outcome::Refused(reason) => {
            metrics.reject(source, "quota");
            ItemResult::NotKept { id, reason: format!("{reason:?}") }
        }
    }
}

impl Storer {
    /// Handles a batch or a prune (`run` handles the Close itself).
    fn handle(&mut self, staged: Staged) {
        match staged {
            Staged::Batch(v) => {
                self.store_batch(v);
                self.pending.fetch_sub(1, Ordering::AcqRel);
            }
            Staged::Prune => match self.store.prune(now_secs()) {
                Ok(report) => tracing::debug!(?report, "pruned expired records"),
                Err(e) => tracing::warn!(error = %e, "pruning failed"),
            },
            Staged::Close { reply } => {
                let _ = reply.send(Err("the writer got a close out of order".into()));
            }
        }
    }

    /// Stores a verified batch in one transaction, flushes if it holds local records, then sends
    /// events, verdicts and replies.
    fn store_batch(&mut self, v: Verified) {
        let Verified { jobs, mut results, mut good, places, now } = v;
        let mut changed = false;
        let mut stored = Vec::new();
        if !good.is_empty() {
            good.iter_mut().for_each(Prepared::make_document);
            match self.store.apply_prepared(&mut good, now) {
                Ok(outcomes) => {
                    for ((p, (j, slot)), outcome) in good.iter().zip(&places).zip(outcomes) {
                        let source = jobs[*j].0.source();
                        let id = p.record().id();
                        results[*j][*slot] = Some(match outcome {
                            Outcome::Stored { replaced, .. } => {
                                changed = true;
                                self.metrics.outcome(source, "stored");
                                stored.push((p.record(), *j, replaced));
                                ItemResult::Stored { id, replaced }
                            }
                            other => not_stored(&self.metrics, source, id, other),
                        });
                    }
                }
                Err(e) => {
                    // The store failed (disk full, I/O): nothing of this batch was written. Gossip is
                    // ignored (not the sender's fault), callers hear the error.
                    tracing::error!(error = %e, "store write failed");
                    for &(j, slot) in &places {
                        results[j][slot] = Some(ItemResult::Rejected { code: "store_error", reason: e.to_string() });
                    }
                }
            }
        }

        // Group commit: the local user hears back only once their records are on disk; so does the
        // other party of a deal, whose node drops a record from its outbox once we answer `Stored`
        // (a proposal travels nowhere else: unflushed, a crash here would lose it for good).
        let acknowledged = |o: &Origin| matches!(o, Origin::Local | Origin::Deal { .. });
        let local = jobs.iter().any(|(o, _)| acknowledged(o));
        if local && let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "store flush failed");
            for (j, (o, _)) in jobs.iter().enumerate() {
                if acknowledged(o) {
                    for r in results[j].iter_mut() {
                        if matches!(r, Some(ItemResult::Stored { .. }) | None) {
                            *r =
                                Some(ItemResult::Rejected { code: "store_error", reason: format!("not flushed: {e}") });
                        }
                    }
                }
            }
        }

        for (record, j, replaced) in stored {
            let origin = &jobs[j].0;
            let scope = topics::scope_of(record.body());
            let _ = self.events.send(NodeEvent::stored(record, scope.clone(), origin.source(), replaced));
            let ours = record.author() == &self.local || record.body().cosigner() == Some(&self.local);
            if matches!(origin, Origin::Local)
                && ours
                && let Some(scope) = scope
            {
                // Blocking is fine here: the swarm task never waits on us.
                let _ = self.to_swarm.blocking_send(ToSwarm::Publish { scope, bytes: record.bytes().to_vec() });
            }
        }
        if changed {
            let _ = self.to_swarm.blocking_send(ToSwarm::Changed);
        }

        // Verdicts and replies.
        for ((origin, reply), results) in jobs.into_iter().zip(results) {
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
    !matches!(code, "expired" | "author_rate_limited" | "new_author_rate_limited" | "store_error" | "queue_full")
}

/// The two ingest stages over a store, without a swarm: what the ingest benchmark drives, so that it
/// can feed records as a peer would (no flush) as well as locally. Not part of the node's API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Pipeline {
    tx: mpsc::Sender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the stages on `store` (the writer on a new thread, which starts the verifier).
    pub fn start(store: Store, limits: Limits, local: PublicKey) -> std::io::Result<Pipeline> {
        let (tx, rx) = mpsc::channel(limits.ingest_queue);
        let (to_swarm, mut swarm_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(16);
        // Nobody listens to the swarm messages: drain them so the writer never waits.
        std::thread::Builder::new()
            .name("troc-bench-swarm".into())
            .spawn(move || while swarm_rx.blocking_recv().is_some() {})?;
        let writer = Writer { local, store, metrics: Metrics::new(), limits, rx, to_swarm, events };
        let writer = std::thread::Builder::new().name("troc-writer".into()).spawn(move || writer.run())?;
        Ok(Pipeline { tx, writer: Some(writer) })
    }

    /// Ingests records as the local user's (`peer` = None: flushed before the answer) or as
    /// fetched from a peer during catch-up.
    pub async fn ingest(&self, items: Vec<Vec<u8>>, peer: Option<PeerId>) -> Option<Vec<ItemResult>> {
        self.ingest_from(
            match peer {
                Some(peer) => Origin::Sync { peer },
                None => Origin::Local,
            },
            items,
        )
        .await
    }

    async fn ingest_from(&self, origin: Origin, items: Vec<Vec<u8>>) -> Option<Vec<ItemResult>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Records { origin: Box::new(origin), items, reply: Some(reply) }).await.ok()?;
        rx.await.ok()
    }

    /// Closes the store and waits for both stages to stop.
    pub async fn close(mut self) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Close { reply }).await.map_err(|_| "the writer is gone".to_string())?;
        let result = rx.await.map_err(|_| "the writer stopped without closing".to_string())?;
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use troc_protocol::{Category, Identity, Kind, Listing, ListingKey, Signed, Terms};

    use crate::store::{Store, StoreConfig};
    use crate::{Node, NodeConfig, now_secs};

    fn listing(key: u8, now: u64) -> Listing {
        Listing {
            key: ListingKey([key; 16]),
            revision: 1,
            kind: Kind::Lend,
            category: Category::Tools,
            title: format!("Drill {key}"),
            description: "A cordless drill.".into(),
            tags: vec![],
            terms: Terms::default(),
            community: "north".into(),
            location: "u09tv".into(),
            available_from: None,
            available_until: None,
            valid_until: now + 24 * 3600,
        }
    }

    /// Copies a directory tree as it is on disk now.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }

    /// A record the local user published is on disk when `publish` returns: a copy of the database
    /// taken at that moment, with the node still running and nothing closed (what a crash or a
    /// power cut would leave), has it. Without the writer's flush it would sit in sled's buffers
    /// for up to half a second.
    #[test]
    fn a_published_record_is_on_disk_when_publish_returns() {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::for_test(dir.path().join("node"), Identity::from_seed(&[0x42; 32]));
        let db = config.db_path();
        let (node, _events) = rt.block_on(Node::spawn(config)).expect("spawn");
        for key in 1..=5u8 {
            let (record, result) = rt.block_on(node.sign_and_publish(listing(key, now_secs()))).expect("publish");
            assert!(result.is_stored(), "{result:?}");
            let copy = tempfile::tempdir().expect("tempdir");
            copy_dir(&db, &copy.path().join("db"));
            let store = Store::open(StoreConfig::new(copy.path().join("db"))).expect("open the copy");
            assert!(store.open_repair().is_some(), "the copy was not closed: it is checked at open");
            let found = store.get(&record.id()).expect("read");
            assert_eq!(found.map(|r| r.id()), Some(record.id()), "record {key} is in the copy");
            let _: Option<Signed<Listing>> =
                store.latest_listing(node.identity().public(), &ListingKey([key; 16])).expect("read");
        }
        rt.block_on(node.shutdown()).expect("shutdown");
    }

    /// A runtime and an empty store in a temporary directory (kept while the guard lives).
    fn runtime_and_store() -> (tokio::runtime::Runtime, tempfile::TempDir, Store) {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path().join("db"))).expect("open");
        (rt, dir, store)
    }

    /// A listing signed by `who` now.
    fn signed(who: &Identity, key: u8) -> troc_protocol::SignedRecord {
        Signed::sign(who, now_secs(), listing(key, now_secs())).expect("sign").into_any()
    }

    /// A pipeline over `store` whose new authors share `budget` of gossip and `sync` per peer of
    /// catch-up, and stay new for an hour.
    fn with_budget(store: Store, budget: crate::limits::Rate, sync: crate::limits::Rate) -> super::Pipeline {
        let limits = crate::config::Limits {
            new_author_gossip: budget,
            new_author_sync: sync,
            new_author_settle: std::time::Duration::from_secs(3600),
            ..crate::config::Limits::default()
        };
        super::Pipeline::start(store, limits, *Identity::from_seed(&[0x50; 32]).public()).expect("start")
    }

    /// How a record reaches the pipeline in these tests: forwarded by `peer` as gossip published by
    /// its author, or fetched from `peer` by catch-up.
    #[derive(Clone, Copy)]
    enum Via<'a> {
        Gossip(&'a Identity),
        CatchUp(&'a Identity),
    }

    /// Feeds `record` to the pipeline `via` gossip or catch-up: "stored", or the refusal's code.
    fn feed(
        rt: &tokio::runtime::Runtime,
        pipeline: &super::Pipeline,
        via: Via<'_>,
        record: &troc_protocol::SignedRecord,
    ) -> &'static str {
        let origin = match via {
            Via::Gossip(peer) => {
                let scope = crate::topics::scope_of(record.body()).expect("a public record");
                super::Origin::Gossip {
                    peer: peer.public().to_peer_id(),
                    msg_id: libp2p::gossipsub::MessageId::new(record.id().as_bytes()),
                    topic: crate::topics::topic(&scope).hash(),
                    publisher: Some(record.header().author.to_peer_id()),
                }
            }
            Via::CatchUp(peer) => super::Origin::Sync { peer: peer.public().to_peer_id() },
        };
        let result = rt.block_on(pipeline.ingest_from(origin, vec![record.bytes().to_vec()])).expect("answer");
        match &result[..] {
            [super::ItemResult::Stored { .. }] => "stored",
            [super::ItemResult::Rejected { code, .. }] => code,
            other => panic!("{other:?}"),
        }
    }

    /// Gossip by authors new to the node shares one budget; an author met by catch-up is new too,
    /// and an author whose records the store held at start is not counted.
    #[test]
    fn new_authors_share_the_budget_and_catch_up_starts_their_clock() {
        let (rt, _dir, store) = runtime_and_store();
        let [settled, synced, peer] = [0x51, 0x52, 0x53].map(|b| Identity::from_seed(&[b; 32]));
        let fresh: Vec<Identity> = (0..3u8).map(|i| Identity::from_seed(&[0x60 + i; 32])).collect();
        store.apply(&[signed(&settled, 1)], now_secs()).expect("stored before start");
        let two = crate::limits::Rate::new(0.0, 2.0);
        let pipeline = with_budget(store, two, two);
        let gossip = |who: &Identity, key: u8| feed(&rt, &pipeline, Via::Gossip(&peer), &signed(who, key));
        // Met by catch-up: stored, no gossip token taken.
        assert_eq!(feed(&rt, &pipeline, Via::CatchUp(&peer), &signed(&synced, 1)), "stored");
        // Two fresh authors take the two tokens; the third and the author met by catch-up wait.
        assert_eq!(gossip(&fresh[0], 1), "stored");
        assert_eq!(gossip(&fresh[1], 1), "stored");
        assert_eq!(gossip(&fresh[2], 1), "new_author_rate_limited");
        assert_eq!(gossip(&synced, 2), "new_author_rate_limited", "met by catch-up: new until it settles");
        assert_eq!(gossip(&fresh[0], 2), "new_author_rate_limited", "stored once, still new");
        // Known from before the start: not counted.
        for key in 2..6 {
            assert_eq!(gossip(&settled, key), "stored");
        }
        // Catch-up: one peer brings new authors' records up to its share (2, one taken above), the
        // settled author's without counting; another peer has a share of its own.
        let other_peer = Identity::from_seed(&[0x54; 32]);
        let catch_up =
            |from: &Identity, who: &Identity, key: u8| feed(&rt, &pipeline, Via::CatchUp(from), &signed(who, key));
        assert_eq!(catch_up(&peer, &synced, 3), "stored");
        assert_eq!(catch_up(&peer, &synced, 4), "new_author_rate_limited");
        assert_eq!(catch_up(&peer, &settled, 9), "stored");
        assert_eq!(catch_up(&other_peer, &synced, 4), "stored");
        rt.block_on(pipeline.close()).expect("close");
    }

    /// A node that starts with an empty store is joining: the authors its catch-up brings in its
    /// first minutes were in the community before it, so they are settled, not new; an author it
    /// first meets by gossip is new all the same.
    #[test]
    fn a_joining_node_settles_the_authors_its_first_catch_up_brings() {
        let (rt, _dir, store) = runtime_and_store();
        let [member, stranger, peer] = [0x71, 0x72, 0x73].map(|b| Identity::from_seed(&[b; 32]));
        // No budget at all for new authors: any record counted against one is refused.
        let none = crate::limits::Rate::new(0.0, 0.0);
        let pipeline = with_budget(store, none, none);
        for key in 1..4 {
            assert_eq!(
                feed(&rt, &pipeline, Via::CatchUp(&peer), &signed(&member, key)),
                "stored",
                "joining: not counted"
            );
        }
        let gossip = |who: &Identity, key: u8| feed(&rt, &pipeline, Via::Gossip(&peer), &signed(who, key));
        assert_eq!(gossip(&member, 5), "stored", "brought by the first catch-up");
        assert_eq!(gossip(&stranger, 1), "new_author_rate_limited", "first met by gossip");
        rt.block_on(pipeline.close()).expect("close");
    }

    /// A record the other party of a deal sent directly is on disk when the writer answers: that
    /// answer (`Stored`) makes the sender drop it from its outbox, and a proposal travels nowhere
    /// else. The crash tests lost one this way before the writer flushed for deal messages too.
    #[test]
    fn a_record_from_a_deal_partner_is_on_disk_when_ingest_answers() {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let store = Store::open(StoreConfig::new(&db)).expect("open");
        let me = Identity::from_seed(&[0x42; 32]);
        let partner = Identity::from_seed(&[0x43; 32]);
        let pipeline = super::Pipeline::start(store, crate::config::Limits::default(), *me.public()).expect("start");
        let peer = partner.public().to_peer_id();
        for key in 1..=5u8 {
            let record = Signed::sign(&partner, now_secs(), listing(key, now_secs())).expect("sign");
            let origin = super::Origin::Deal { peer };
            let result = rt.block_on(pipeline.ingest_from(origin, vec![record.bytes().to_vec()])).expect("answer");
            assert!(matches!(result[..], [super::ItemResult::Stored { .. }]), "{result:?}");
            let copy = tempfile::tempdir().expect("tempdir");
            copy_dir(&db, &copy.path().join("db"));
            let copied = Store::open(StoreConfig::new(copy.path().join("db"))).expect("open the copy");
            assert!(copied.get(&record.id()).expect("read").is_some(), "record {key} is in the copy");
        }
        rt.block_on(pipeline.close()).expect("close");
    }
}
