//! A deal's state, derived purely from its records (and `now`, for reminders): which negotiation
//! a record belongs to, where the deal stands, its due date with extensions, when it ended, and
//! whose move it is. No I/O: the deal service and the API hand it the records.

use std::collections::HashMap;

use serde::Serialize;
use troc_protocol::{
    Agreement, Body, CancelReason, Kind, ListingKey, Proposal, PublicKey, RecordId, RecordType, Signed, SignedRecord,
    Timestamp,
};

use crate::store::REVIEW_WINDOW_SECS;

/// Where a deal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    Proposed,
    Countered,
    Declined,
    Withdrawn,
    Agreed,
    HandedOver,
    /// The handover was acknowledged.
    Acknowledged,
    Returned,
    Completed,
    Cancelled,
    NoShow,
    Disputed,
}

impl DealStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DealStatus::Proposed => "proposed",
            DealStatus::Countered => "countered",
            DealStatus::Declined => "declined",
            DealStatus::Withdrawn => "withdrawn",
            DealStatus::Agreed => "agreed",
            DealStatus::HandedOver => "handed_over",
            DealStatus::Acknowledged => "acknowledged",
            DealStatus::Returned => "returned",
            DealStatus::Completed => "completed",
            DealStatus::Cancelled => "cancelled",
            DealStatus::NoShow => "no_show",
            DealStatus::Disputed => "disputed",
        }
    }

    /// Whether nothing more happens in the deal (but reviews).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DealStatus::Declined
                | DealStatus::Withdrawn
                | DealStatus::Completed
                | DealStatus::Cancelled
                | DealStatus::NoShow
                | DealStatus::Disputed
        )
    }
}

/// The records of one deal: its proposals (a negotiation, oldest first), its agreement, and every
/// record naming one of them.
#[derive(Debug, Clone, Default)]
pub struct DealRecords {
    pub proposals: Vec<Signed<Proposal>>,
    pub agreement: Option<Signed<Agreement>>,
    pub others: Vec<SignedRecord>,
}

impl DealRecords {
    /// The deal's id: its agreement's, or its latest proposal's.
    pub fn id(&self) -> Option<RecordId> {
        self.agreement.as_ref().map(|a| a.id()).or_else(|| self.proposals.last().map(|p| p.id()))
    }

    /// Whether `id` is the id of one of its proposals, its agreement, or a record of it.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.proposals.iter().any(|p| p.id() == *id)
            || self.agreement.as_ref().is_some_and(|a| a.id() == *id)
            || self.others.iter().any(|r| r.id() == *id)
    }
}

/// Groups records into deals: proposals linked by `supersedes` form one negotiation, an agreement
/// joins the negotiation of its proposal, every other deal record the deal it names. Records
/// naming a deal that is not among `records` are left out.
pub fn group(records: Vec<SignedRecord>) -> Vec<DealRecords> {
    let mut proposals: HashMap<RecordId, Signed<Proposal>> = HashMap::new();
    let mut agreements = Vec::new();
    let mut others = Vec::new();
    for r in records {
        match r.downcast::<Proposal>() {
            Ok(p) => {
                proposals.insert(p.id(), p);
            }
            Err(r) => match r.downcast::<Agreement>() {
                Ok(a) => agreements.push(a),
                Err(r) => others.push(r),
            },
        }
    }
    let root = |mut id: RecordId| {
        // Bounded: a chain cannot be longer than the proposals there are.
        for _ in 0..=proposals.len() {
            match proposals.get(&id).and_then(|p| p.body().supersedes) {
                Some(prev) if proposals.contains_key(&prev) => id = prev,
                _ => break,
            }
        }
        id
    };
    let mut groups: HashMap<RecordId, DealRecords> = HashMap::new();
    let mut member: HashMap<RecordId, RecordId> = HashMap::new();
    for (id, p) in &proposals {
        let r = root(*id);
        member.insert(*id, r);
        groups.entry(r).or_default().proposals.push(p.clone());
    }
    agreements.sort_by_key(|a| (a.created_at(), a.id()));
    for a in agreements {
        let r = if proposals.contains_key(&a.body().proposal) { root(a.body().proposal) } else { a.id() };
        let g = groups.entry(r).or_default();
        if g.agreement.is_none() {
            member.insert(a.id(), r);
            g.agreement = Some(a);
        }
    }
    others.sort_by_key(|r| (r.created_at(), r.id()));
    // Revocations name the record they revoke: placed after every other record, so that a
    // revocation of a deal step joins the step's deal.
    let (revocations, others): (Vec<SignedRecord>, Vec<SignedRecord>) =
        others.into_iter().partition(|r| r.record_type() == RecordType::Revocation);
    for r in others.into_iter().chain(revocations) {
        let Some(deal) = deal_of(r.body()) else { continue };
        if let Some(root) = member.get(&deal).copied()
            && let Some(g) = groups.get_mut(&root)
        {
            member.insert(r.id(), root);
            g.others.push(r);
        }
    }
    // A negotiation in its order: by how many proposals each one counters (two signed in the same
    // second keep the order of the chain, not of their ids), then by time.
    let depth = |p: &Signed<Proposal>| {
        let mut d = 0usize;
        let mut at = p.body().supersedes;
        while let Some(prev) = at.and_then(|id| proposals.get(&id)) {
            d += 1;
            if d > proposals.len() {
                break;
            }
            at = prev.body().supersedes;
        }
        d
    };
    let mut out: Vec<DealRecords> = groups.into_values().collect();
    for g in &mut out {
        g.proposals.sort_by_cached_key(|p| (depth(p), p.created_at(), p.id()));
    }
    out.sort_by_key(|g| std::cmp::Reverse(latest(g)));
    out
}

fn latest(g: &DealRecords) -> Timestamp {
    let p = g.proposals.iter().map(|p| p.created_at()).max().unwrap_or(0);
    let a = g.agreement.as_ref().map_or(0, |a| a.created_at());
    let o = g.others.iter().map(|r| r.created_at()).max().unwrap_or(0);
    p.max(a).max(o)
}

/// The deal (proposal or agreement) a deal record names.
pub fn deal_of(body: &Body) -> Option<RecordId> {
    Some(match body {
        Body::Handover(s) => s.agreement,
        Body::Return(s) => s.agreement,
        Body::Completion(s) => s.agreement,
        Body::Acknowledgement(a) => a.agreement,
        Body::Cancellation(c) => c.deal,
        Body::Extension(e) => e.agreement,
        Body::Review(r) => r.agreement,
        Body::ReviewCommitment(c) => c.agreement,
        // The record it revokes (for a deal step, the step: see `group`).
        Body::Revocation(r) => r.target,
        _ => return None,
    })
}

/// The authors of the revocations of `id` among `records`.
pub fn revokers(id: &RecordId, records: &[SignedRecord]) -> Vec<PublicKey> {
    records
        .iter()
        .filter_map(|r| match r.body() {
            Body::Revocation(v) if v.target == *id && v.target_author == *r.author() => Some(*r.author()),
            _ => None,
        })
        .collect()
}

/// Whether the other party built on `r`: signed a record of the deal (other than a revocation)
/// dated at or after it.
pub fn built_on(r: &SignedRecord, records: &[SignedRecord], other: &PublicKey) -> bool {
    records.iter().any(|x| {
        x.author() == other
            && x.id() != r.id()
            && x.created_at() >= r.created_at()
            && x.record_type() != RecordType::Revocation
    })
}

/// Whether the deal record `r` is undone by revocation (`docs/protocol.md` section 14, the same
/// rule as the store's): a review or review commitment its author revoked; an extension both its
/// signers revoked; any other record its author revoked before `other` (the other party) built on
/// it. An agreement is never undone here: both parties revoking it annuls it, and the store drops it.
pub fn undone(r: &SignedRecord, records: &[SignedRecord], other: &PublicKey) -> bool {
    let by = revokers(&r.id(), records);
    let cosigner = match r.body() {
        Body::Extension(e) => by.contains(&e.counterparty),
        _ => false,
    };
    undone_rule(r.record_type(), by.contains(r.author()), cosigner, || built_on(r, records, other))
}

/// The rule [`undone`] applies, on what it found out, for whoever keeps deal records in another
/// form (the trust engine's facts): whether a deal record of type `t` is undone, given whether its
/// author revoked it, whether its co-signer did (an extension's counterparty), and whether the
/// other party built on it (asked only when it matters).
pub fn undone_rule(t: RecordType, by_author: bool, by_cosigner: bool, built_on: impl FnOnce() -> bool) -> bool {
    match t {
        RecordType::Agreement | RecordType::Revocation => false,
        RecordType::Extension => by_author && by_cosigner,
        RecordType::Review | RecordType::ReviewCommitment => by_author,
        _ => by_author && !built_on(),
    }
}

/// The records of a deal that stand: revocations and what they undid left out.
fn standing(agreement: &Signed<Agreement>, others: &[SignedRecord]) -> Vec<SignedRecord> {
    let (a, b) = (*agreement.author(), agreement.body().counterparty);
    others
        .iter()
        .filter(|r| {
            let other = if *r.author() == a { b } else { a };
            r.record_type() != RecordType::Revocation && !undone(r, others, &other)
        })
        .cloned()
        .collect()
}

/// One review of a deal as the API shows it: a hidden one (a commitment not revealed yet) shows no
/// content.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    pub author: PublicKey,
    pub subject: PublicKey,
    /// `hidden` (committed, not revealed), `revealed`, `open` (published without a commitment), or
    /// `revoked` (withdrawn by its author: it no longer counts, and it still takes the author's one
    /// review of the deal).
    pub state: &'static str,
    pub commitment: Option<RecordId>,
    pub review: Option<RecordId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<troc_protocol::Rating>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A revocation of one of a deal's records.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationView {
    pub id: RecordId,
    pub author: PublicKey,
    pub target: RecordId,
    pub target_type: RecordType,
    pub created_at: Timestamp,
    /// `undone` (the record no longer counts), `no_effect` (the other party built on it, or, for
    /// an extension, the other signer has not revoked it too), or `pending_annulment` (an agreement
    /// the other party has not revoked).
    pub effect: &'static str,
}

/// A deal as one party (or anyone) sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DealView {
    /// The agreement's id, or the latest proposal's.
    pub id: RecordId,
    pub status: DealStatus,
    pub kind: Kind,
    pub listing_author: PublicKey,
    pub listing_key: ListingKey,
    /// Who proposed first, and to whom.
    pub proposer: PublicKey,
    pub receiver: PublicKey,
    /// The latest proposal (absent for a deal seen only through its public records).
    pub proposal: Option<RecordId>,
    pub agreement: Option<RecordId>,
    pub start: Timestamp,
    /// The due date, with extensions.
    pub due: Option<Timestamp>,
    /// Who hands the thing over (the listing's author, or the other party for a want).
    pub giver: PublicKey,
    /// The person whose move it is, and what the move is.
    pub waiting_for: Option<PublicKey>,
    pub next_step: Option<&'static str>,
    /// The handover and return records not acknowledged yet.
    pub unacknowledged: Vec<RecordId>,
    /// When the deal ended (see `docs/protocol.md` section 14), once it has.
    pub ended_at: Option<Timestamp>,
    /// Reviews are accepted until this time.
    pub review_until: Option<Timestamp>,
    pub reviews: Vec<ReviewView>,
    /// The parties who revoked the agreement. One alone changes nothing (the agreement, its steps
    /// and reviews stand); once both have, the agreement is annulled and every node drops it.
    pub agreement_revoked_by: Vec<PublicKey>,
    /// The revocations of the deal's records, and whether each undid its record.
    pub revocations: Vec<RevocationView>,
    /// Every record of the deal, by id and type, oldest first.
    pub records: Vec<(RecordId, RecordType, PublicKey, Timestamp)>,
}

/// When a deal ended, as the store's rules define it: its first completion or cancellation; without
/// one, its due date (with extensions) or, for a deal without one, its start. `None` before that.
pub fn ended_at(agreement: &Signed<Agreement>, others: &[SignedRecord]) -> Timestamp {
    let others = &standing(agreement, others)[..];
    let terminal = others
        .iter()
        .filter(|r| match r.body() {
            Body::Completion(c) => c.agreement == agreement.id(),
            Body::Cancellation(c) => {
                c.deal == agreement.id() && !matches!(c.reason, CancelReason::Declined | CancelReason::Withdrawn)
            }
            _ => false,
        })
        .map(|r| r.created_at())
        .min();
    terminal.unwrap_or_else(|| due_of(agreement, others).unwrap_or(agreement.body().start))
}

/// The due date with extensions.
pub fn due_of(agreement: &Signed<Agreement>, others: &[SignedRecord]) -> Option<Timestamp> {
    let due = agreement.body().due?;
    let others = &standing(agreement, others)[..];
    let ext = others
        .iter()
        .filter_map(|r| match r.body() {
            Body::Extension(e) if e.agreement == agreement.id() => Some(e.new_due),
            _ => None,
        })
        .max();
    Some(ext.map_or(due, |e| e.max(due)))
}

/// Derives a deal's state. `None` if `records` holds neither a proposal nor an agreement.
pub fn derive(records: &DealRecords, now: Timestamp) -> Option<DealView> {
    let first = records.proposals.first();
    let last = records.proposals.last();
    let (kind, listing_author, listing_key, start, proposer, receiver) = match (&records.agreement, first) {
        (_, Some(p)) => {
            let b = last.map_or(p.body(), |l| l.body());
            (b.kind, b.listing_author, b.listing_key, b.start, *p.author(), p.body().counterparty)
        }
        (Some(a), None) => {
            let b = a.body();
            (b.kind, b.listing_author, b.listing_key, b.start, b.counterparty, *a.author())
        }
        (None, None) => return None,
    };
    let (kind, listing_author, listing_key, start) = match &records.agreement {
        Some(a) => (a.body().kind, a.body().listing_author, a.body().listing_key, a.body().start),
        None => (kind, listing_author, listing_key, start),
    };
    let other_of = |who: &PublicKey| if *who == proposer { receiver } else { proposer };
    let giver = if kind == Kind::Want { other_of(&listing_author) } else { listing_author };
    let taker = other_of(&giver);
    let id = records.id()?;

    let mut view = DealView {
        id,
        status: DealStatus::Proposed,
        kind,
        listing_author,
        listing_key,
        proposer,
        receiver,
        proposal: last.map(|p| p.id()),
        agreement: records.agreement.as_ref().map(|a| a.id()),
        start,
        due: last.and_then(|p| p.body().end),
        giver,
        waiting_for: None,
        next_step: None,
        unacknowledged: Vec::new(),
        ended_at: None,
        review_until: None,
        reviews: Vec::new(),
        agreement_revoked_by: Vec::new(),
        revocations: Vec::new(),
        records: records
            .proposals
            .iter()
            .map(|p| (p.id(), RecordType::Proposal, *p.author(), p.created_at()))
            .chain(records.agreement.iter().map(|a| (a.id(), RecordType::Agreement, *a.author(), a.created_at())))
            .chain(records.others.iter().map(|r| (r.id(), r.record_type(), *r.author(), r.created_at())))
            .collect(),
    };
    view.records.sort_by_key(|r| (r.3, r.0));

    let Some(agreement) = &records.agreement else {
        // Negotiating.
        let Some(last) = last else { return Some(view) };
        let cancelled = records.others.iter().find_map(|r| match r.body() {
            Body::Cancellation(c) if c.deal == last.id() => Some(c.reason),
            _ => None,
        });
        view.status = match cancelled {
            Some(CancelReason::Declined) => DealStatus::Declined,
            Some(CancelReason::Withdrawn) => DealStatus::Withdrawn,
            _ if records.proposals.len() > 1 => DealStatus::Countered,
            _ => DealStatus::Proposed,
        };
        if !view.status.is_final() {
            view.waiting_for = Some(last.body().counterparty);
            view.next_step = Some("accept");
        }
        return Some(view);
    };

    let aid = agreement.id();
    view.due = due_of(agreement, &records.others);
    view.agreement_revoked_by = revokers(&aid, &records.others);
    let (pa, pb) = (*agreement.author(), agreement.body().counterparty);
    for r in &records.others {
        let Body::Revocation(v) = r.body() else { continue };
        let target_type = if v.target == aid {
            RecordType::Agreement
        } else if let Some(t) = records.others.iter().find(|t| t.id() == v.target) {
            t.record_type()
        } else {
            continue;
        };
        let effect = match records.others.iter().find(|t| t.id() == v.target) {
            None => "pending_annulment",
            Some(t) if undone(t, &records.others, if *t.author() == pa { &pb } else { &pa }) => "undone",
            Some(_) => "no_effect",
        };
        view.revocations.push(RevocationView {
            id: r.id(),
            author: *r.author(),
            target: v.target,
            target_type,
            created_at: r.created_at(),
            effect,
        });
    }
    let standing = standing(agreement, &records.others);
    let revoked_reviews: Vec<&SignedRecord> = records
        .others
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::Review | RecordType::ReviewCommitment))
        .filter(|r| !standing.iter().any(|s| s.id() == r.id()))
        .collect();
    let mut handed = false;
    let mut returned = false;
    let mut acked: Vec<RecordId> = Vec::new();
    let mut steps: Vec<RecordId> = Vec::new();
    let mut status = DealStatus::Agreed;
    let mut terminal: Option<DealStatus> = None;
    for r in &standing {
        match r.body() {
            Body::Handover(_) => {
                handed = true;
                steps.push(r.id());
            }
            Body::Return(_) => {
                returned = true;
                steps.push(r.id());
            }
            Body::Acknowledgement(a) => acked.push(a.subject),
            Body::Completion(_) if terminal.is_none() => terminal = Some(DealStatus::Completed),
            Body::Cancellation(c) if c.deal == aid && terminal.is_none() => {
                terminal = Some(match c.reason {
                    CancelReason::NoShow => DealStatus::NoShow,
                    CancelReason::Dispute => DealStatus::Disputed,
                    _ => DealStatus::Cancelled,
                })
            }
            _ => {}
        }
    }
    view.unacknowledged = steps.iter().filter(|s| !acked.contains(s)).copied().collect();
    if handed {
        status = DealStatus::HandedOver;
        if view.unacknowledged.is_empty() {
            status = DealStatus::Acknowledged;
        }
    }
    if returned {
        status = DealStatus::Returned;
    }
    let lends = matches!(kind, Kind::Lend | Kind::Share);
    let (who, what) = match (status, view.unacknowledged.is_empty()) {
        (DealStatus::Agreed, _) => (Some(giver), "handover"),
        (DealStatus::HandedOver, _) => (Some(taker), "acknowledge"),
        (DealStatus::Acknowledged, _) if lends => (Some(taker), "return"),
        (DealStatus::Acknowledged, _) => (None, "complete"),
        (DealStatus::Returned, false) => (Some(giver), "acknowledge"),
        _ => (None, "complete"),
    };
    view.status = terminal.unwrap_or(status);
    if !view.status.is_final() {
        view.waiting_for = who;
        view.next_step = Some(what);
    }

    let ended = ended_at(agreement, &records.others);
    if terminal.is_some() || ended <= now {
        view.ended_at = Some(ended);
        view.review_until = Some(ended.saturating_add(REVIEW_WINDOW_SECS));
    }

    // Reviews: commitments, then the reviews that reveal them or stand on their own.
    for r in &standing {
        if let Body::ReviewCommitment(c) = r.body() {
            view.reviews.push(ReviewView {
                author: *r.author(),
                subject: c.subject,
                state: "hidden",
                commitment: Some(r.id()),
                review: None,
                rating: None,
                text: None,
            });
        }
    }
    for r in &standing {
        if let Body::Review(v) = r.body() {
            // The author's one review of the deal was revoked (a review, or the commitment this one
            // reveals): this one does not count, as in the trust facts; the revoked one shows below.
            if revoked_reviews.iter().any(|x| x.author() == r.author()) {
                continue;
            }
            let slot = view.reviews.iter_mut().find(|x| x.author == *r.author() && x.review.is_none());
            let (state, commitment) = match slot {
                Some(x) => {
                    x.state = "revealed";
                    x.review = Some(r.id());
                    x.rating = Some(v.rating);
                    x.text = Some(v.text.clone());
                    continue;
                }
                None => ("open", None),
            };
            view.reviews.push(ReviewView {
                author: *r.author(),
                subject: v.subject,
                state,
                commitment,
                review: Some(r.id()),
                rating: Some(v.rating),
                text: Some(v.text.clone()),
            });
        }
    }
    // Revoked reviews: shown as such, without their content.
    for r in revoked_reviews {
        let (subject, commitment, review) = match r.body() {
            Body::Review(v) => (v.subject, None, Some(r.id())),
            Body::ReviewCommitment(c) => (c.subject, Some(r.id()), None),
            _ => continue,
        };
        view.reviews.push(ReviewView {
            author: *r.author(),
            subject,
            state: "revoked",
            commitment,
            review,
            rating: None,
            text: None,
        });
    }
    Some(view)
}

#[cfg(test)]
mod tests {
    use troc_protocol::{
        Acknowledgement, Cancellation, Completion, Condition, Handover, Identity, ListingKey, PartiallySigned, Return,
    };

    use super::*;

    const T: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn any<B: troc_protocol::RecordBody>(who: &Identity, at: u64, body: B) -> SignedRecord {
        Signed::sign(who, at, body).expect("valid").into_any()
    }

    /// Bob proposes to borrow Alice's drill; Alice accepts.
    fn loan() -> (Identity, Identity, Signed<Proposal>, SignedRecord) {
        let (alice, bob) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let p = Signed::sign(
            &bob,
            T,
            Proposal {
                counterparty: *alice.public(),
                listing_author: *alice.public(),
                listing_key: ListingKey([1; 16]),
                listing_revision: 1,
                kind: Kind::Lend,
                start: T,
                end: Some(T + 3 * DAY),
                message: String::new(),
                in_return: String::new(),
                supersedes: None,
            },
        )
        .expect("valid");
        let a = Agreement {
            counterparty: *bob.public(),
            proposal: p.id(),
            listing_author: *alice.public(),
            listing_key: ListingKey([1; 16]),
            kind: Kind::Lend,
            start: T,
            due: Some(T + 3 * DAY),
        };
        let ag = PartiallySigned::sign(&alice, T + 1, a).unwrap().countersign(&bob).unwrap().into_any();
        (alice, bob, p, ag)
    }

    fn status(records: Vec<SignedRecord>, now: u64) -> DealView {
        let groups = group(records);
        assert_eq!(groups.len(), 1);
        derive(&groups[0], now).expect("a deal")
    }

    #[test]
    fn a_loan_goes_through_its_states_and_says_whose_move_it_is() {
        let (alice, bob, p, ag) = loan();
        let mut recs = vec![p.clone().into_any()];
        let v = status(recs.clone(), T);
        assert_eq!(
            (v.status, v.waiting_for, v.next_step),
            (DealStatus::Proposed, Some(*alice.public()), Some("accept"))
        );
        recs.push(ag.clone());
        let v = status(recs.clone(), T + 2);
        assert_eq!(
            (v.status, v.waiting_for, v.next_step),
            (DealStatus::Agreed, Some(*alice.public()), Some("handover"))
        );
        let h = any(&alice, T + 3, Handover { agreement: ag.id(), note: String::new() });
        recs.push(h.clone());
        let v = status(recs.clone(), T + 3);
        assert_eq!((v.status, v.waiting_for), (DealStatus::HandedOver, Some(*bob.public())));
        let ack = |who: &Identity, subject: RecordId, at| {
            any(
                who,
                at,
                Acknowledgement { agreement: ag.id(), subject, condition: Condition::AsExpected, note: String::new() },
            )
        };
        recs.push(ack(&bob, h.id(), T + 4));
        let v = status(recs.clone(), T + 4);
        assert_eq!((v.status, v.next_step), (DealStatus::Acknowledged, Some("return")));
        let r = any(&bob, T + 5, Return { agreement: ag.id(), note: String::new() });
        recs.push(r.clone());
        assert_eq!(status(recs.clone(), T + 5).waiting_for, Some(*alice.public()));
        recs.push(ack(&alice, r.id(), T + 6));
        recs.push(any(&alice, T + 7, Completion { agreement: ag.id(), note: String::new() }));
        let v = status(recs, T + 8);
        assert_eq!((v.status, v.waiting_for, v.ended_at), (DealStatus::Completed, None, Some(T + 7)));
        assert_eq!(v.review_until, Some(T + 7 + REVIEW_WINDOW_SECS));
    }

    #[test]
    fn counters_declines_and_no_shows() {
        let (alice, bob, p, ag) = loan();
        let counter = Signed::sign(
            &alice,
            T + 1,
            Proposal { counterparty: *bob.public(), supersedes: Some(p.id()), ..p.body().clone() },
        )
        .unwrap();
        let v = status(vec![p.clone().into_any(), counter.clone().into_any()], T + 1);
        assert_eq!((v.status, v.id, v.waiting_for), (DealStatus::Countered, counter.id(), Some(*bob.public())));
        let declined =
            any(&bob, T + 2, Cancellation { deal: counter.id(), reason: CancelReason::Declined, note: String::new() });
        let v = status(vec![p.clone().into_any(), counter.into_any(), declined], T + 2);
        assert_eq!((v.status, v.waiting_for), (DealStatus::Declined, None));
        let no_show =
            any(&alice, T + 9, Cancellation { deal: ag.id(), reason: CancelReason::NoShow, note: String::new() });
        let v = status(vec![p.into_any(), ag, no_show], T + 9);
        assert_eq!((v.status, v.ended_at), (DealStatus::NoShow, Some(T + 9)));
    }

    #[test]
    fn revocations_show_in_the_deal_and_undo_only_what_nobody_built_on() {
        use troc_protocol::Revocation;
        let (alice, bob, p, ag) = loan();
        let revoke = |who: &Identity, target: RecordId, at| {
            any(who, at, Revocation { target_author: *who.public(), target, reason: String::new() })
        };
        // Alice hands over and revokes it before Bob acknowledged: undone, back to `agreed`.
        let h = any(&alice, T + 3, Handover { agreement: ag.id(), note: String::new() });
        let rh = revoke(&alice, h.id(), T + 4);
        let v = status(vec![p.clone().into_any(), ag.clone(), h.clone(), rh.clone()], T + 5);
        assert_eq!((v.status, v.revocations.len()), (DealStatus::Agreed, 1));
        assert_eq!((v.revocations[0].target_type, v.revocations[0].effect), (RecordType::Handover, "undone"));
        // Bob had acknowledged it (after it): the handover stands.
        let ack = any(
            &bob,
            T + 3,
            Acknowledgement {
                agreement: ag.id(),
                subject: h.id(),
                condition: Condition::AsExpected,
                note: String::new(),
            },
        );
        let v = status(vec![p.clone().into_any(), ag.clone(), h.clone(), ack.clone(), rh], T + 5);
        assert_eq!((v.status, v.revocations[0].effect), (DealStatus::Acknowledged, "no_effect"));

        // Bob revokes the agreement alone: shown, and Alice's review of Bob stands; Bob's own revoked
        // review shows without its content.
        let done = any(&alice, T + 7, Completion { agreement: ag.id(), note: String::new() });
        let review = |who: &Identity, subject: &Identity, at| {
            any(
                who,
                at,
                troc_protocol::Review {
                    agreement: ag.id(),
                    subject: *subject.public(),
                    rating: troc_protocol::Rating::Positive,
                    facets: vec![],
                    text: "Fine".into(),
                    nonce: troc_protocol::Nonce([at as u8; 16]),
                },
            )
        };
        let (ra, rb) = (review(&alice, &bob, T + 8), review(&bob, &alice, T + 8));
        let recs = vec![
            p.into_any(),
            ag.clone(),
            done,
            ra,
            rb.clone(),
            revoke(&bob, ag.id(), T + 9),
            revoke(&bob, rb.id(), T + 9),
        ];
        let v = status(recs, T + 10);
        assert_eq!((v.status, v.agreement_revoked_by.clone()), (DealStatus::Completed, vec![*bob.public()]));
        let by = |who: &Identity| v.reviews.iter().find(|r| r.author == *who.public()).expect("a review");
        assert_eq!((by(&alice).state, by(&alice).rating.is_some()), ("open", true));
        assert_eq!((by(&bob).state, by(&bob).rating.is_some(), by(&bob).text.is_some()), ("revoked", false, false));
        assert!(
            v.revocations.iter().any(|r| r.target_type == RecordType::Agreement && r.effect == "pending_annulment")
        );

        // Alice committed to a hidden review, revoked the commitment, then revealed the review
        // anyway: the reveal does not count (one review per party), and shows nowhere with content.
        let hidden = review(&alice, &bob, T + 8);
        let commit = any(
            &alice,
            T + 8,
            troc_protocol::ReviewCommitment { agreement: ag.id(), subject: *bob.public(), review: hidden.id() },
        );
        let recs = vec![ag.clone(), commit.clone(), revoke(&alice, commit.id(), T + 9), hidden];
        let v = status(recs, T + 10);
        let mine: Vec<_> = v.reviews.iter().filter(|r| r.author == *alice.public()).collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(
            (mine[0].state, mine[0].rating.is_some(), mine[0].commitment),
            ("revoked", false, Some(commit.id()))
        );
    }

    #[test]
    fn a_counter_signed_in_the_same_second_is_the_latest_proposal() {
        let (alice, bob, p, _) = loan();
        // A counter made in the same second, with an id below the proposal's (found by trying):
        // ordering by time then id would take the proposal for the latest.
        let counter = (0..64)
            .map(|n| {
                let body = Proposal {
                    counterparty: *bob.public(),
                    supersedes: Some(p.id()),
                    message: format!("Two days only ({n})"),
                    ..p.body().clone()
                };
                Signed::sign(&alice, p.created_at(), body).unwrap()
            })
            .find(|c| c.id() < p.id())
            .expect("one of 64 ids is below");
        let v = status(vec![counter.clone().into_any(), p.into_any()], T);
        assert_eq!(
            (v.status, v.proposal, v.waiting_for),
            (DealStatus::Countered, Some(counter.id()), Some(*bob.public()))
        );
    }

    #[test]
    fn reminders_before_the_due_date_and_after() {
        use crate::deals::service::reminder_of;
        assert_eq!(reminder_of(T + 2 * DAY, T), None);
        assert_eq!(reminder_of(T + DAY, T), Some("due_soon"));
        assert_eq!(reminder_of(T, T), Some("overdue"));
    }
}
