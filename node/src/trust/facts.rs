//! Trust facts: what the reputation engine reads out of verified records, and the rules between
//! records that decide which of them count.
//!
//! The store enforces the same rules at ingest, but the engine does not rely on it: every rule is
//! applied again here, defensively, and anything that breaks one is ignored (never an error: a
//! record that does not count is simply not a fact). [`RecordFacts`] collects records in any order
//! and [`RecordFacts::build`] resolves them, at a given `now`, into a [`TrustGraph`] of typed facts:
//! deals, opinions and vouches. [`TrustGraph::from_facts`] builds the same graph from typed facts
//! directly (benchmarks, tests, other sources), checking their consistency.
//!
//! The rules (`docs/reputation.md`, "Rules"):
//! - A **deal** is a co-signed `agreement` (both signatures are verified by `Signed`); its parties
//!   are the author and the counterparty; its id is the agreement's id; its time is the agreement's
//!   `created_at`, which both parties signed.
//! - A deal **ends** at the earliest `completion` or agreement `cancellation` (`cancelled`,
//!   `no_show`, `dispute`) authored by a party and dated no earlier than the agreement. Without such
//!   a record, it ends by its own dates: at `due` (lend, share) or else at `start`, once that time has
//!   passed. A deal that has not ended has no review window yet.
//! - Its **outcome**: `disputed` if a party disputed it, else `no_show` if a party reported a
//!   no-show, else `completed` if a party completed it, else `cancelled`, else `open`.
//! - A **review** counts when its agreement is known, its author is a party, its subject is the
//!   other party, and its time is within `[agreement time, end + 14 days]`. Only the first such
//!   review of an author for a deal (lowest `(time, id)`) is considered; if the author revoked it,
//!   that author has no review of that deal (revoking does not open the way to a second review).
//!   A revoked `review_commitment` likewise takes its author's place at its time, with no opinion:
//!   neither the review revealing it nor a later one counts.
//!   A review that reveals a live `review_commitment` (same author, agreement, subject, committed
//!   id) takes the commitment's time if earlier: committing inside the window is what counts.
//! - **Signals** from deal records: a `no_show` authored by a party is a negative opinion of the
//!   other party (who did not show); a `dispute` likewise; an `acknowledgement` of a handover or
//!   return that the other party signed, with condition `damaged` or `incomplete`, is a negative
//!   opinion of that other party. A `completion` authored by a party of a completed deal is a weak
//!   positive opinion ("satisfied") when that party wrote no review.
//! - A party's **opinion** of the other in one deal is the worst of their review and their signals.
//! - A **vouch** is a weak edge while `created_at ≤ now < expires_at`, unless revoked.
//! - A **revocation** follows the deal state's rules (`docs/protocol.md` section 14, applied with
//!   [`crate::deals::state::undone_rule`]): it withdraws its author's review, review commitment or
//!   vouch; it undoes its author's deal step (handover, return, acknowledgement, completion,
//!   cancellation) unless the other party signed a record of the deal (other than a revocation)
//!   dated at or after the step; an extension stops moving the due date once both its signers
//!   revoked it; an agreement revoked by one party stands, and one revoked by both is annulled: the
//!   deal and everything naming it are left out.
//! - A deal's **due date** is the agreement's, moved later by the extensions that stand.
//! - Records dated more than the clock skew (`MAX_CLOCK_SKEW_SECS`) after `now` are ignored.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use thiserror::Error;
use troc_protocol::limits::MAX_CLOCK_SKEW_SECS;
use troc_protocol::{
    Agreement, Body, CancelReason, Condition, PublicKey, Rating, RecordId, RecordType, SignedRecord, Timestamp,
};

use crate::deals::state::undone_rule;

/// How long after a deal ends its parties may review it (14 days).
pub const REVIEW_WINDOW_SECS: u64 = 14 * 86_400;

/// A key's bytes: the order in which the engine sorts identities (PublicKey has no `Ord`).
pub(crate) type KeyBytes = [u8; 32];

pub(crate) fn kb(k: &PublicKey) -> KeyBytes {
    *k.as_bytes()
}

/// How a deal ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DealOutcome {
    /// Agreed, not ended by any record yet.
    Open,
    /// A party completed it.
    Completed,
    /// A party called it off before the handover.
    Cancelled,
    /// A party reported that the other did not show up.
    NoShow,
    /// A party disputed it.
    Disputed,
}

/// One party's verdict on the other in one deal, worst first (so `min` is "the worst of").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Negative,
    Neutral,
    /// No review, but the party signed the completion: a weak positive.
    Satisfied,
    Positive,
}

impl From<Rating> for Verdict {
    fn from(r: Rating) -> Self {
        match r {
            Rating::Positive => Verdict::Positive,
            Rating::Neutral => Verdict::Neutral,
            Rating::Negative => Verdict::Negative,
        }
    }
}

/// Where the deciding part of an opinion came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpinionSource {
    Review,
    Completion,
    NoShow,
    Dispute,
    Condition,
}

/// A deal: a co-signed agreement and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deal {
    /// The agreement's id.
    pub id: RecordId,
    /// Author, then counterparty.
    pub parties: [PublicKey; 2],
    /// The agreement's `created_at` (signed by both parties).
    pub at: Timestamp,
    /// When it ended (see the module documentation), if it has.
    pub ended_at: Option<Timestamp>,
    pub outcome: DealOutcome,
}

impl Deal {
    /// The other party, if `who` is a party.
    pub fn other(&self, who: &PublicKey) -> Option<&PublicKey> {
        if &self.parties[0] == who {
            Some(&self.parties[1])
        } else if &self.parties[1] == who {
            Some(&self.parties[0])
        } else {
            None
        }
    }
}

/// One party's opinion of the other in one deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Opinion {
    pub deal: RecordId,
    pub from: PublicKey,
    pub about: PublicKey,
    /// When it was expressed (the review's time, or the signal's).
    pub at: Timestamp,
    pub verdict: Verdict,
    pub source: OpinionSource,
}

/// A live vouch: a weak trust edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VouchEdge {
    pub from: PublicKey,
    pub to: PublicKey,
    pub at: Timestamp,
    pub expires_at: Timestamp,
}

/// Why typed facts given to [`TrustGraph::from_facts`] are inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FactError {
    #[error("deal {0} is listed twice")]
    DuplicateDeal(RecordId),
    #[error("deal {0} has the same identity as both parties")]
    SelfDeal(RecordId),
    #[error("an opinion names deal {0}, which is not in the facts")]
    UnknownDeal(RecordId),
    #[error("an opinion on deal {deal} is not from one party about the other")]
    NotParties { deal: RecordId },
    #[error("two opinions by the same party on deal {0}")]
    DuplicateOpinion(RecordId),
    #[error("a vouch names the same identity as author and subject")]
    SelfVouch,
}

/// The facts the engine computes from: deals, opinions, vouches, each in a canonical order (deals
/// by id, opinions by deal then author, vouches by author then subject), whatever order they came in.
#[derive(Debug, Clone, Default)]
pub struct TrustGraph {
    deals: BTreeMap<RecordId, Deal>,
    opinions: Vec<Opinion>,
    vouches: Vec<VouchEdge>,
}

impl TrustGraph {
    /// Builds the graph from verified records, applying every rule of the module documentation at
    /// `now`. Records that break a rule are ignored.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a SignedRecord>, now: Timestamp) -> Self {
        let mut facts = RecordFacts::default();
        for r in records {
            facts.add(r);
        }
        facts.build(now)
    }

    /// Builds the graph from typed facts, checking that they are consistent: each deal once and
    /// between two identities, each opinion on a known deal from one party about the other, at most
    /// one opinion per party and deal, no vouch for oneself. Several vouches for the same pair are
    /// kept as one (the longest-lived).
    pub fn from_facts(
        deals: impl IntoIterator<Item = Deal>,
        opinions: impl IntoIterator<Item = Opinion>,
        vouches: impl IntoIterator<Item = VouchEdge>,
    ) -> Result<Self, FactError> {
        let mut by_id = BTreeMap::new();
        for d in deals {
            if d.parties[0] == d.parties[1] {
                return Err(FactError::SelfDeal(d.id));
            }
            let id = d.id;
            if by_id.insert(id, d).is_some() {
                return Err(FactError::DuplicateDeal(id));
            }
        }
        let mut seen = BTreeSet::new();
        let mut ops = Vec::new();
        for o in opinions {
            let deal = by_id.get(&o.deal).ok_or(FactError::UnknownDeal(o.deal))?;
            if deal.other(&o.from) != Some(&o.about) {
                return Err(FactError::NotParties { deal: o.deal });
            }
            if !seen.insert((o.deal, kb(&o.from))) {
                return Err(FactError::DuplicateOpinion(o.deal));
            }
            ops.push(o);
        }
        let mut vs = Vec::new();
        for v in vouches {
            if v.from == v.to {
                return Err(FactError::SelfVouch);
            }
            vs.push(v);
        }
        Ok(Self::assemble(by_id, ops, vs))
    }

    fn assemble(deals: BTreeMap<RecordId, Deal>, mut opinions: Vec<Opinion>, mut vouches: Vec<VouchEdge>) -> Self {
        opinions.sort_by_key(|o| (o.deal, kb(&o.from)));
        // One vouch per pair: the one that expires last (then the earliest).
        vouches.sort_by(|a, b| {
            (kb(&a.from), kb(&a.to), std::cmp::Reverse(a.expires_at), a.at).cmp(&(
                kb(&b.from),
                kb(&b.to),
                std::cmp::Reverse(b.expires_at),
                b.at,
            ))
        });
        vouches.dedup_by(|later, first| later.from == first.from && later.to == first.to);
        TrustGraph { deals, opinions, vouches }
    }

    /// Deals, by id.
    pub fn deals(&self) -> impl ExactSizeIterator<Item = &Deal> {
        self.deals.values()
    }

    pub fn deal(&self, id: &RecordId) -> Option<&Deal> {
        self.deals.get(id)
    }

    /// Opinions, by deal then author.
    pub fn opinions(&self) -> &[Opinion] {
        &self.opinions
    }

    /// Live vouches, one per pair, by author then subject.
    pub fn vouches(&self) -> &[VouchEdge] {
        &self.vouches
    }
}

#[derive(Debug, Clone)]
struct AgreementFact {
    author: PublicKey,
    counterparty: PublicKey,
    at: Timestamp,
    start: Timestamp,
    due: Option<Timestamp>,
}

/// A deal step or signal: handover, return, completion, cancellation, acknowledgement.
#[derive(Debug, Clone)]
struct StepFact {
    agreement: RecordId,
    author: PublicKey,
    at: Timestamp,
    kind: StepKind,
}

impl StepKind {
    /// The record type, as far as the revocation rules tell them apart.
    fn record_type(self) -> RecordType {
        match self {
            StepKind::Handed => RecordType::Handover,
            StepKind::Completion => RecordType::Completion,
            StepKind::Cancel(_) => RecordType::Cancellation,
            StepKind::Ack { .. } => RecordType::Acknowledgement,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// Handover or return: something the author handed over.
    Handed,
    Completion,
    Cancel(CancelReason),
    Ack {
        subject: RecordId,
        condition: Condition,
    },
}

#[derive(Debug, Clone)]
struct ReviewFact {
    author: PublicKey,
    at: Timestamp,
    agreement: RecordId,
    subject: PublicKey,
    rating: Rating,
}

#[derive(Debug, Clone)]
struct CommitmentFact {
    author: PublicKey,
    at: Timestamp,
    agreement: RecordId,
    subject: PublicKey,
}

/// An extension of a loan's due date, co-signed by its author and `counterparty`.
#[derive(Debug, Clone)]
struct ExtensionFact {
    agreement: RecordId,
    author: PublicKey,
    counterparty: PublicKey,
    at: Timestamp,
    new_due: Timestamp,
}

#[derive(Debug, Clone)]
struct VouchFact {
    author: PublicKey,
    at: Timestamp,
    subject: PublicKey,
    expires_at: Timestamp,
}

/// Verified records collected for the trust engine, in any order, each at most once (by id). Cheap
/// to clone: it keeps only the few fields the rules need.
#[derive(Debug, Clone, Default)]
pub struct RecordFacts {
    agreements: BTreeMap<RecordId, AgreementFact>,
    steps: BTreeMap<RecordId, StepFact>,
    reviews: BTreeMap<RecordId, ReviewFact>,
    /// Commitments by the id of the review they hide, then by their own id.
    commitments: BTreeMap<(RecordId, RecordId), CommitmentFact>,
    vouches: BTreeMap<RecordId, VouchFact>,
    extensions: BTreeMap<RecordId, ExtensionFact>,
    /// (author, target) of every revocation.
    revoked: BTreeSet<(KeyBytes, RecordId)>,
}

impl RecordFacts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one verified record. Records of types the engine does not read (profiles, listings,
    /// withdrawals, proposals) are ignored.
    pub fn add(&mut self, record: &SignedRecord) {
        let id = record.id();
        let author = *record.author();
        let at = record.created_at();
        let step = |agreement: RecordId, kind: StepKind| StepFact { agreement, author, at, kind };
        match record.body() {
            Body::Agreement(Agreement { counterparty, start, due, .. }) => {
                self.agreements
                    .insert(id, AgreementFact { author, counterparty: *counterparty, at, start: *start, due: *due });
            }
            Body::Handover(h) => {
                self.steps.insert(id, step(h.agreement, StepKind::Handed));
            }
            Body::Return(r) => {
                self.steps.insert(id, step(r.agreement, StepKind::Handed));
            }
            Body::Completion(c) => {
                self.steps.insert(id, step(c.agreement, StepKind::Completion));
            }
            Body::Cancellation(c) => {
                self.steps.insert(id, step(c.deal, StepKind::Cancel(c.reason)));
            }
            Body::Acknowledgement(a) => {
                self.steps.insert(id, step(a.agreement, StepKind::Ack { subject: a.subject, condition: a.condition }));
            }
            Body::Review(r) => {
                self.reviews.insert(
                    id,
                    ReviewFact { author, at, agreement: r.agreement, subject: r.subject, rating: r.rating },
                );
            }
            Body::ReviewCommitment(c) => {
                self.commitments
                    .insert((c.review, id), CommitmentFact { author, at, agreement: c.agreement, subject: c.subject });
            }
            Body::Vouch(v) => {
                self.vouches.insert(id, VouchFact { author, at, subject: v.subject, expires_at: v.expires_at });
            }
            Body::Revocation(r) => {
                // The protocol refuses a revocation of someone else's record; so does the engine.
                if r.target_author == author {
                    self.revoked.insert((kb(&author), r.target));
                }
            }
            Body::Extension(e) => {
                self.extensions.insert(
                    id,
                    ExtensionFact {
                        agreement: e.agreement,
                        author,
                        counterparty: e.counterparty,
                        at,
                        new_due: e.new_due,
                    },
                );
            }
            Body::Profile(_) | Body::Listing(_) | Body::Withdrawal(_) | Body::Proposal(_) => {}
        }
    }

    fn is_revoked(&self, author: &PublicKey, id: &RecordId) -> bool {
        self.revoked.contains(&(kb(author), *id))
    }

    /// Resolves the collected records into facts at `now` (the module documentation lists the rules).
    pub fn build(&self, now: Timestamp) -> TrustGraph {
        let horizon = now.saturating_add(MAX_CLOCK_SKEW_SECS);
        let live = |t: Timestamp| t <= horizon;

        // Deal state, per agreement.
        #[derive(Default)]
        struct State {
            ended: Option<Timestamp>,
            completed: bool,
            cancelled: bool,
            no_show: bool,
            disputed: bool,
            /// (author, time) of completions.
            completions: Vec<(KeyBytes, Timestamp)>,
            /// Negative signals: author, time, source.
            negatives: Vec<(KeyBytes, Timestamp, OpinionSource)>,
        }
        let mut states: BTreeMap<RecordId, State> = BTreeMap::new();
        for (id, a) in &self.agreements {
            // An agreement both parties revoked is annulled: the store deletes it with every record
            // naming it; here it is left out, and so is everything naming it.
            let annulled = self.is_revoked(&a.author, id) && self.is_revoked(&a.counterparty, id);
            if a.author != a.counterparty && live(a.at) && !annulled {
                states.insert(*id, State::default());
            }
        }
        // Who signed a record of each deal when (every record of the deal but revocations): a step
        // its author revoked still counts if the other party signed one dated at or after it.
        let mut activity: BTreeMap<RecordId, Vec<(KeyBytes, Timestamp)>> = BTreeMap::new();
        let steps = self.steps.values().map(|s| (s.agreement, &s.author, s.at));
        let extensions = self.extensions.values().map(|e| (e.agreement, &e.author, e.at));
        let reviews = self.reviews.values().map(|r| (r.agreement, &r.author, r.at));
        let commitments = self.commitments.values().map(|c| (c.agreement, &c.author, c.at));
        for (deal, who, at) in steps.chain(extensions).chain(reviews).chain(commitments) {
            if states.contains_key(&deal) && live(at) {
                activity.entry(deal).or_default().push((kb(who), at));
            }
        }
        let built_on = |deal: &RecordId, other: &PublicKey, at: Timestamp| {
            activity.get(deal).is_some_and(|v| v.iter().any(|(who, t)| *who == kb(other) && *t >= at))
        };
        // The deal state's rule (`deals::state::undone`), on the facts.
        let undone = |id: &RecordId, s: &StepFact, other: &PublicKey| {
            undone_rule(s.kind.record_type(), self.is_revoked(&s.author, id), false, || {
                built_on(&s.agreement, other, s.at)
            })
        };
        // Due dates moved by extensions that stand (not revoked by both their signers).
        let mut extended: BTreeMap<RecordId, Timestamp> = BTreeMap::new();
        for (eid, e) in &self.extensions {
            let Some(a) = self.agreements.get(&e.agreement) else { continue };
            let signers = (e.author == a.author && e.counterparty == a.counterparty)
                || (e.author == a.counterparty && e.counterparty == a.author);
            if !signers || !live(e.at) || !states.contains_key(&e.agreement) {
                continue;
            }
            let by_author = self.is_revoked(&e.author, eid);
            if undone_rule(RecordType::Extension, by_author, self.is_revoked(&e.counterparty, eid), || false) {
                continue;
            }
            let due = extended.entry(e.agreement).or_insert(e.new_due);
            *due = (*due).max(e.new_due);
        }
        let party_of = |agreement: &RecordId, who: &PublicKey| -> Option<PublicKey> {
            let a = self.agreements.get(agreement)?;
            if &a.author == who {
                Some(a.counterparty)
            } else if &a.counterparty == who {
                Some(a.author)
            } else {
                None
            }
        };
        for (id, s) in &self.steps {
            let Some(state) = states.get_mut(&s.agreement) else { continue };
            let Some(agreement) = self.agreements.get(&s.agreement) else { continue };
            let Some(other) = party_of(&s.agreement, &s.author) else { continue };
            if !live(s.at) || s.at < agreement.at || undone(id, s, &other) {
                continue;
            }
            let end = |state: &mut State| state.ended = Some(state.ended.map_or(s.at, |e| e.min(s.at)));
            match s.kind {
                StepKind::Handed => {}
                StepKind::Completion => {
                    end(state);
                    state.completed = true;
                    state.completions.push((kb(&s.author), s.at));
                }
                StepKind::Cancel(reason) => match reason {
                    CancelReason::Cancelled => {
                        end(state);
                        state.cancelled = true;
                    }
                    CancelReason::NoShow => {
                        end(state);
                        state.no_show = true;
                        state.negatives.push((kb(&s.author), s.at, OpinionSource::NoShow));
                    }
                    CancelReason::Dispute => {
                        end(state);
                        state.disputed = true;
                        state.negatives.push((kb(&s.author), s.at, OpinionSource::Dispute));
                    }
                    // Declined and withdrawn name proposals, not deals.
                    CancelReason::Declined | CancelReason::Withdrawn => {}
                },
                StepKind::Ack { subject, condition } => {
                    if matches!(condition, Condition::Damaged | Condition::Incomplete) {
                        // The acknowledged handover or return must be the other party's, on this deal.
                        let handed_by_other = self.steps.get(&subject).is_some_and(|h| {
                            h.kind == StepKind::Handed
                                && h.agreement == s.agreement
                                && h.author == other
                                && !undone(&subject, h, &s.author)
                        });
                        if handed_by_other {
                            state.negatives.push((kb(&s.author), s.at, OpinionSource::Condition));
                        }
                    }
                }
            }
        }

        let mut deals = BTreeMap::new();
        for (id, state) in &states {
            let Some(a) = self.agreements.get(id) else { continue };
            let due = a.due.map(|d| extended.get(id).map_or(d, |e| d.max(*e)));
            let by_dates = due.unwrap_or(a.start).max(a.at);
            let ended_at = state.ended.or((by_dates <= now).then_some(by_dates));
            let outcome = if state.disputed {
                DealOutcome::Disputed
            } else if state.no_show {
                DealOutcome::NoShow
            } else if state.completed {
                DealOutcome::Completed
            } else if state.cancelled {
                DealOutcome::Cancelled
            } else {
                DealOutcome::Open
            };
            deals.insert(*id, Deal { id: *id, parties: [a.author, a.counterparty], at: a.at, ended_at, outcome });
        }

        // Reviews: the first eligible one per (deal, author), by (effective time, id).
        let mut first: BTreeMap<(RecordId, KeyBytes), (Timestamp, RecordId)> = BTreeMap::new();
        for (rid, r) in &self.reviews {
            let Some(deal) = deals.get(&r.agreement) else { continue };
            if deal.other(&r.author) != Some(&r.subject) || !live(r.at) {
                continue;
            }
            let committed = self
                .commitments
                .range((*rid, RecordId([0; 32]))..=(*rid, RecordId([0xff; 32])))
                .filter(|((_, cid), c)| {
                    c.author == r.author
                        && c.agreement == r.agreement
                        && c.subject == r.subject
                        && live(c.at)
                        && !self.is_revoked(&c.author, cid)
                })
                .map(|(_, c)| c.at)
                .min();
            let at = committed.map_or(r.at, |c| c.min(r.at));
            let Some(end) = deal.ended_at else { continue };
            if at < deal.at || at > end.saturating_add(REVIEW_WINDOW_SECS) {
                continue;
            }
            let slot = first.entry((r.agreement, kb(&r.author))).or_insert((at, *rid));
            if (at, *rid) < *slot {
                *slot = (at, *rid);
            }
        }
        // A revoked commitment still is its author's one review of the deal, with nothing in it:
        // it takes the slot at its time (its id names no review, so no opinion comes of it), and
        // the review that would reveal it does not count.
        for ((_, cid), c) in &self.commitments {
            let Some(deal) = deals.get(&c.agreement) else { continue };
            if deal.other(&c.author) != Some(&c.subject) || !live(c.at) || !self.is_revoked(&c.author, cid) {
                continue;
            }
            let Some(end) = deal.ended_at else { continue };
            if c.at < deal.at || c.at > end.saturating_add(REVIEW_WINDOW_SECS) {
                continue;
            }
            let slot = first.entry((c.agreement, kb(&c.author))).or_insert((c.at, *cid));
            if (c.at, *cid) < *slot {
                *slot = (c.at, *cid);
            }
        }

        // Opinions: per (deal, author), the worst of the review and the signals.
        let mut opinions: BTreeMap<(RecordId, KeyBytes), Opinion> = BTreeMap::new();
        for ((deal_id, _), (at, rid)) in &first {
            let (Some(deal), Some(r)) = (deals.get(deal_id), self.reviews.get(rid)) else { continue };
            if self.is_revoked(&r.author, rid) {
                continue;
            }
            merge(&mut opinions, deal, r.author, *at, r.rating.into(), OpinionSource::Review);
        }
        for (id, state) in &states {
            let Some(deal) = deals.get(id) else { continue };
            for (author, at, source) in &state.negatives {
                let Some(from) = deal.parties.iter().find(|p| &kb(p) == author).copied() else { continue };
                merge(&mut opinions, deal, from, *at, Verdict::Negative, *source);
            }
        }
        // A completion stands for a weak positive only where its author said nothing else.
        for (id, state) in &mut states {
            state.completions.sort_unstable();
            let Some(deal) = deals.get(id) else { continue };
            if deal.outcome != DealOutcome::Completed {
                continue;
            }
            for (author, at) in &state.completions {
                if opinions.contains_key(&(*id, *author)) {
                    continue;
                }
                let Some(from) = deal.parties.iter().find(|p| &kb(p) == author).copied() else { continue };
                merge(&mut opinions, deal, from, *at, Verdict::Satisfied, OpinionSource::Completion);
            }
        }

        let vouches = self
            .vouches
            .iter()
            .filter(|(id, v)| {
                v.author != v.subject && live(v.at) && v.expires_at > now && !self.is_revoked(&v.author, id)
            })
            .map(|(_, v)| VouchEdge { from: v.author, to: v.subject, at: v.at, expires_at: v.expires_at })
            .collect();
        TrustGraph::assemble(deals, opinions.into_values().collect(), vouches)
    }
}

/// Records `from`'s opinion in `deal`, keeping the worst (then earliest) per deal and author.
fn merge(
    opinions: &mut BTreeMap<(RecordId, KeyBytes), Opinion>,
    deal: &Deal,
    from: PublicKey,
    at: Timestamp,
    verdict: Verdict,
    source: OpinionSource,
) {
    let Some(about) = deal.other(&from).copied() else { return };
    let o = Opinion { deal: deal.id, from, about, at, verdict, source };
    match opinions.entry((deal.id, kb(&from))) {
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(o);
        }
        std::collections::btree_map::Entry::Occupied(mut e) => {
            let cur = e.get_mut();
            if (o.verdict, o.at) < (cur.verdict, cur.at) {
                *cur = o;
            }
        }
    }
}
