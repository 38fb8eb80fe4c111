//! The deal actions of a [`NodeHandle`]: what the API (and tests) call to propose, accept,
//! decline, counter, withdraw, hand over, acknowledge, return, complete, cancel, extend and review,
//! to read deals and the inbox, and to block people.
//!
//! Every action signs with the node's identity, stores the record through the one ingest path
//! (public records are then gossiped), and queues it in the outbox for the other party, so an
//! offline party gets it when it is back.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use troc_protocol::{
    Acknowledgement, Agreement, Body, CancelReason, Cancellation, Completion, Condition, Extension, FacetRating,
    Handover, Nonce, PartiallySigned, Proposal, PublicKey, RecordId, RecordType, Return, Review, ReviewCommitment,
    Signed, SignedRecord, random_bytes,
};

use super::DealError;
use super::service::{DealClock, ToDeals, reminder_of};
use super::state::{self, DealRecords, DealStatus, DealView};
use super::{DealRequest, DealResponse};
use crate::events::NodeEvent;
use crate::store::OutboxKind;
use crate::{NodeHandle, now_secs};

/// How long [`NodeHandle::accept_proposal`] waits for the proposer's countersignature before
/// answering that the agreement is on its way.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(10);

/// A deal step a party signs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Handover,
    Return,
    Complete,
}

/// The answer to accepting a proposal.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The agreement's id (the same once both have signed).
    pub agreement: RecordId,
    /// Both signatures are in and the agreement is stored; false: sent (or queued for the
    /// proposer's node) and completed when the countersignature arrives.
    pub agreed: bool,
}

/// One thing waiting for the person.
#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    /// `proposal` (an answer is expected from you), `extension_request`, `due_soon`, `overdue`,
    /// `your_move` (a deal step is yours), `review` (a deal ended and you have not reviewed it).
    pub kind: &'static str,
    pub deal: RecordId,
    pub peer: PublicKey,
    /// The record concerned (the proposal, the extension request).
    pub record: Option<RecordId>,
    pub status: DealStatus,
    pub next_step: Option<&'static str>,
    pub due: Option<u64>,
}

impl NodeHandle {
    fn me(&self) -> PublicKey {
        *self.identity().public()
    }

    async fn publish_deal(&self, record: &SignedRecord, to: &PublicKey) -> Result<(), DealError> {
        self.deals.publish(record).await.map_err(|(code, reason)| DealError::Refused { code, reason })?;
        self.deals.queue(to, OutboxKind::Record, record.bytes())?;
        Ok(())
    }

    fn check_not_blocked(&self, who: &PublicKey) -> Result<(), DealError> {
        if self.store().is_blocked(who)? {
            return Err(DealError::Blocked(who.to_string()));
        }
        Ok(())
    }

    fn typed<T: troc_protocol::RecordBody>(&self, id: &RecordId, what: &str) -> Result<Signed<T>, DealError> {
        let r = self.store().get(id)?.ok_or_else(|| DealError::NotFound(format!("{what} {id}")))?;
        r.downcast::<T>().map_err(|_| DealError::NotFound(format!("{what} {id}")))
    }

    /// Proposes a deal (or, with `supersedes`, counters a proposal): signs it, keeps it, and sends
    /// it to the counterparty directly (queued while they are offline). Never gossiped.
    pub async fn propose(&self, proposal: Proposal) -> Result<Signed<Proposal>, DealError> {
        self.check_not_blocked(&proposal.counterparty)?;
        if let Some(prev) = proposal.supersedes {
            let p: Signed<Proposal> = self.typed(&prev, "proposal")?;
            let me = self.me();
            let parties = [*p.author(), p.body().counterparty];
            if !parties.contains(&me) || !parties.contains(&proposal.counterparty) {
                return Err(DealError::NotAParty);
            }
        }
        let record = Signed::sign(self.identity(), now_secs(), proposal)?;
        // The same proposal signed within the same second is the same record (its id covers the
        // content and the second): proposing it again names the deal it already started. While
        // that deal is open that is harmless (a second click); once it is agreed or over, the
        // person meant a new deal and must hear that this is not one.
        if self.store().contains(&record.id())? {
            let view = self.deal(&record.id())?;
            if view.status.is_final() || view.agreement.is_some() {
                return Err(DealError::Invalid(format!(
                    "this very proposal (same listing, terms and message, signed in the same second) already started deal {}, now {}: propose again in a second, or change the message",
                    view.id,
                    view.status.as_str()
                )));
            }
        }
        let any = record.clone().into_any();
        self.publish_deal(&any, &record.body().counterparty).await?;
        Ok(record)
    }

    /// Counters proposal `of` with `proposal` (its `supersedes` is set to `of`).
    pub async fn counter(&self, of: RecordId, mut proposal: Proposal) -> Result<Signed<Proposal>, DealError> {
        let p: Signed<Proposal> = self.typed(&of, "proposal")?;
        if p.body().counterparty != self.me() {
            return Err(DealError::Invalid("only the receiver of a proposal counters it".into()));
        }
        proposal.supersedes = Some(of);
        proposal.counterparty = *p.author();
        self.propose(proposal).await
    }

    /// Accepts a proposal made to us: signs the matching agreement and sends it to the proposer,
    /// whose node countersigns it if it matches their live proposal exactly. Waits up to
    /// [`ACCEPT_WAIT`] for the countersignature.
    pub async fn accept_proposal(&self, proposal: RecordId) -> Result<Accepted, DealError> {
        let p: Signed<Proposal> = self.typed(&proposal, "proposal")?;
        let me = self.me();
        if p.body().counterparty != me {
            return Err(DealError::Invalid("only the receiver of a proposal accepts it".into()));
        }
        self.check_not_blocked(p.author())?;
        let view = self.deal(&proposal)?;
        if view.status.is_final() || view.agreement.is_some() || view.proposal != Some(proposal) {
            return Err(DealError::Invalid(format!("the proposal is no longer open ({})", view.status.as_str())));
        }
        let b = p.body();
        let agreement = Agreement {
            counterparty: *p.author(),
            proposal,
            listing_author: b.listing_author,
            listing_key: b.listing_key,
            kind: b.kind,
            start: b.start,
            due: b.end,
        };
        let partial = PartiallySigned::sign(self.identity(), now_secs(), agreement)?;
        let id = partial.id();
        let mut events = self.subscribe();
        self.deals.queue(p.author(), OutboxKind::Cosign, &partial.to_bytes())?;
        let agreed = wait_stored(&mut events, &id, ACCEPT_WAIT, || self.store().contains(&id).unwrap_or(false)).await;
        Ok(Accepted { agreement: id, agreed })
    }

    /// Declines a proposal made to us, or withdraws one of ours.
    pub async fn close_proposal(&self, proposal: RecordId, note: String) -> Result<SignedRecord, DealError> {
        let p: Signed<Proposal> = self.typed(&proposal, "proposal")?;
        let me = self.me();
        let (reason, other) = if *p.author() == me {
            (CancelReason::Withdrawn, p.body().counterparty)
        } else if p.body().counterparty == me {
            (CancelReason::Declined, *p.author())
        } else {
            return Err(DealError::NotAParty);
        };
        let record =
            Signed::sign(self.identity(), now_secs(), Cancellation { deal: proposal, reason, note })?.into_any();
        self.publish_deal(&record, &other).await?;
        Ok(record)
    }

    /// The agreement `id` and the other party, if we are a party.
    fn our_agreement(&self, id: &RecordId) -> Result<(Signed<Agreement>, PublicKey), DealError> {
        let a: Signed<Agreement> = self.typed(id, "agreement")?;
        let me = self.me();
        let other = if *a.author() == me {
            a.body().counterparty
        } else if a.body().counterparty == me {
            *a.author()
        } else {
            return Err(DealError::NotAParty);
        };
        Ok((a, other))
    }

    /// Signs a handover, a return or a completion of agreement `agreement`.
    pub async fn deal_step(&self, agreement: RecordId, step: Step, note: String) -> Result<SignedRecord, DealError> {
        let (_, other) = self.our_agreement(&agreement)?;
        let now = now_secs();
        let record = match step {
            Step::Handover => Signed::sign(self.identity(), now, Handover { agreement, note })?.into_any(),
            Step::Return => Signed::sign(self.identity(), now, Return { agreement, note })?.into_any(),
            Step::Complete => Signed::sign(self.identity(), now, Completion { agreement, note })?.into_any(),
        };
        self.publish_deal(&record, &other).await?;
        Ok(record)
    }

    /// Acknowledges the other party's handover or return (`subject`, or the oldest one not
    /// acknowledged yet).
    pub async fn acknowledge(
        &self,
        agreement: RecordId,
        subject: Option<RecordId>,
        condition: Condition,
        note: String,
    ) -> Result<SignedRecord, DealError> {
        let (_, other) = self.our_agreement(&agreement)?;
        let subject = match subject {
            Some(s) => s,
            None => {
                let view = self.deal(&agreement)?;
                let records = self.store().records_referencing(&agreement)?;
                view.unacknowledged
                    .iter()
                    .find(|id| records.iter().any(|r| r.id() == **id && *r.author() == other))
                    .copied()
                    .ok_or_else(|| DealError::Invalid("nothing of the other party to acknowledge".into()))?
            }
        };
        let record =
            Signed::sign(self.identity(), now_secs(), Acknowledgement { agreement, subject, condition, note })?
                .into_any();
        self.publish_deal(&record, &other).await?;
        Ok(record)
    }

    /// Cancels an agreement: `cancelled`, `no_show` or `dispute`.
    pub async fn cancel_deal(
        &self,
        agreement: RecordId,
        reason: CancelReason,
        note: String,
    ) -> Result<SignedRecord, DealError> {
        if matches!(reason, CancelReason::Declined | CancelReason::Withdrawn) {
            return Err(DealError::Invalid("an agreement is cancelled, not shown up to, or disputed".into()));
        }
        let (_, other) = self.our_agreement(&agreement)?;
        let record =
            Signed::sign(self.identity(), now_secs(), Cancellation { deal: agreement, reason, note })?.into_any();
        self.publish_deal(&record, &other).await?;
        Ok(record)
    }

    /// Asks the other party to move the due date: they accept explicitly.
    pub async fn request_extension(&self, agreement: RecordId, new_due: u64) -> Result<RecordId, DealError> {
        let (a, other) = self.our_agreement(&agreement)?;
        match a.body().due {
            Some(_) if new_due > a.body().start => {}
            Some(_) => return Err(DealError::Invalid("the new due date must be after the start".into())),
            None => return Err(DealError::Invalid("this deal has no due date".into())),
        }
        let partial =
            PartiallySigned::sign(self.identity(), now_secs(), Extension { agreement, counterparty: other, new_due })?;
        self.deals.queue(&other, OutboxKind::Cosign, &partial.to_bytes())?;
        Ok(partial.id())
    }

    /// The extension requests waiting for our answer: `(request id, extension)` with its author.
    pub fn extension_requests(&self) -> Result<Vec<(RecordId, PublicKey, Extension)>, DealError> {
        let now = now_secs();
        let mut out = Vec::new();
        for (id, bytes) in self.store().extension_requests()? {
            match PartiallySigned::from_bytes(&bytes, now).ok().and_then(|p| p.downcast::<Extension>().ok()) {
                Some(p) => out.push((id, p.header().author, p.body().clone())),
                None => {
                    self.store().extension_request_remove(&id)?;
                }
            }
        }
        Ok(out)
    }

    /// Accepts an extension request: countersigns it, stores and gossips it, and sends it back.
    pub async fn accept_extension(&self, request: RecordId) -> Result<SignedRecord, DealError> {
        let bytes = self
            .store()
            .extension_requests()?
            .into_iter()
            .find(|(id, _)| *id == request)
            .map(|(_, b)| b)
            .ok_or_else(|| DealError::NotFound(format!("extension request {request}")))?;
        let partial = PartiallySigned::from_bytes(&bytes, now_secs())?
            .downcast::<Extension>()
            .map_err(|_| DealError::Invalid("not an extension".into()))?;
        let other = partial.header().author;
        let record = partial.countersign(self.identity())?.into_any();
        self.publish_deal(&record, &other).await?;
        self.store().extension_request_remove(&request)?;
        Ok(record)
    }

    /// Declines an extension request (it is dropped; nothing is published).
    pub fn decline_extension(&self, request: RecordId) -> Result<(), DealError> {
        if self.store().extension_request_remove(&request)? {
            Ok(())
        } else {
            Err(DealError::NotFound(format!("extension request {request}")))
        }
    }

    /// Reviews the other party of a deal, blind: publishes a commitment to the review now and keeps
    /// the review, which the node reveals once the other party's commitment is in or the review
    /// window closed. Returns the commitment and the (hidden) review's id.
    pub async fn review(
        &self,
        agreement: RecordId,
        rating: troc_protocol::Rating,
        facets: Vec<FacetRating>,
        text: String,
    ) -> Result<(SignedRecord, RecordId), DealError> {
        let (_, other) = self.our_agreement(&agreement)?;
        let nonce = Nonce(random_bytes::<16>().map_err(|e| DealError::Invalid(e.to_string()))?);
        let now = now_secs();
        let review =
            Signed::sign(self.identity(), now, Review { agreement, subject: other, rating, facets, text, nonce })?;
        let commitment =
            Signed::sign(self.identity(), now, ReviewCommitment { agreement, subject: other, review: review.id() })?
                .into_any();
        self.store().hidden_review_put(&review.id(), review.bytes())?;
        if let Err(e) = self.publish_deal(&commitment, &other).await {
            self.store().hidden_review_remove(&review.id())?;
            return Err(e);
        }
        let _ = self.deals.to_deals.try_send(ToDeals::CheckReveals);
        Ok((commitment, review.id()))
    }

    /// Every deal we are a party of, newest first (blocked people's deals left out).
    pub fn deals(&self) -> Result<Vec<DealView>, DealError> {
        let now = self.deals.clock.now();
        let records = self.store().deals_of(&self.me())?;
        let blocked = self.store().blocked()?;
        Ok(state::group(records)
            .iter()
            .filter_map(|g| state::derive(g, now))
            .filter(|v| !blocked.contains(&v.proposer) && !blocked.contains(&v.receiver))
            .collect())
    }

    fn deal_records(&self, id: &RecordId) -> Result<DealRecords, DealError> {
        let me = self.me();
        let mine = state::group(self.store().deals_of(&me)?);
        if let Some(g) = mine.into_iter().find(|g| g.contains(id)) {
            return Ok(g);
        }
        // A deal of other people, seen through its public records.
        let mut r = self.store().get(id)?.ok_or_else(|| DealError::NotFound(format!("deal {id}")))?;
        if let Body::Revocation(v) = r.body() {
            // A revocation: the deal of the record it revokes.
            r = self.store().get(&v.target)?.ok_or_else(|| DealError::NotFound(format!("deal {id}")))?;
        }
        let agreement = match r.record_type() {
            RecordType::Agreement => r.id(),
            _ => state::deal_of(r.body()).ok_or_else(|| DealError::NotFound(format!("deal {id}")))?,
        };
        let mut records = self.store().records_referencing(&agreement)?;
        if let Some(a) = self.store().get(&agreement)? {
            records.push(a);
        }
        state::group(records).into_iter().next().ok_or_else(|| DealError::NotFound(format!("deal {id}")))
    }

    /// One deal, by the id of any of its records (proposal, agreement, step ...).
    pub fn deal(&self, id: &RecordId) -> Result<DealView, DealError> {
        let g = self.deal_records(id)?;
        state::derive(&g, self.deals.clock.now()).ok_or_else(|| DealError::NotFound(format!("deal {id}")))
    }

    /// Every record of a deal, oldest first.
    pub fn deal_record_list(&self, id: &RecordId) -> Result<Vec<SignedRecord>, DealError> {
        let g = self.deal_records(id)?;
        let mut out: Vec<SignedRecord> = g.proposals.into_iter().map(Signed::into_any).collect();
        out.extend(g.agreement.map(Signed::into_any));
        out.extend(g.others);
        out.sort_by_key(|r| (r.created_at(), r.id()));
        Ok(out)
    }

    /// What waits for the person: proposals to answer, extension requests, loans due soon or
    /// overdue, deal steps that are theirs, deals ended and not reviewed yet.
    pub fn inbox(&self) -> Result<Vec<InboxItem>, DealError> {
        let me = self.me();
        let now = self.deals.clock.now();
        let blocked = self.store().blocked()?;
        let mut out = Vec::new();
        for (id, author, e) in self.extension_requests()? {
            if blocked.contains(&author) {
                continue;
            }
            let status = self.deal(&e.agreement).map(|v| v.status).unwrap_or(DealStatus::Agreed);
            out.push(InboxItem {
                kind: "extension_request",
                deal: e.agreement,
                peer: author,
                record: Some(id),
                status,
                next_step: Some("accept_extension"),
                due: Some(e.new_due),
            });
        }
        for v in self.deals()? {
            let other = if v.proposer == me { v.receiver } else { v.proposer };
            let item = |kind| InboxItem {
                kind,
                deal: v.id,
                peer: other,
                record: None,
                status: v.status,
                next_step: v.next_step,
                due: v.due,
            };
            if v.agreement.is_none() {
                if v.waiting_for == Some(me) {
                    out.push(InboxItem { record: v.proposal, ..item("proposal") });
                }
                continue;
            }
            if let Some(due) = v.due
                && !v.status.is_final()
                && v.status != DealStatus::Returned
                && let Some(kind) = reminder_of(due, now)
            {
                out.push(item(kind));
            }
            if v.waiting_for == Some(me) {
                out.push(item("your_move"));
            }
            let reviewed = v.reviews.iter().any(|r| r.author == me);
            let hidden = self.store().hidden_reviews()?.iter().any(|(_, b)| {
                SignedRecord::from_bytes(b, now)
                    .is_ok_and(|r| matches!(r.body(), Body::Review(x) if Some(x.agreement) == v.agreement))
            });
            if !reviewed && !hidden && v.review_until.is_some_and(|u| now <= u) {
                out.push(item("review"));
            }
        }
        Ok(out)
    }

    /// The clock of this node's deal reminders and deal views (see [`DealClock`]).
    pub fn deal_clock(&self) -> &DealClock {
        &self.deals.clock
    }

    /// Sends one raw direct deal message to `peer` over `/troc/deal/1` and returns its answer,
    /// bypassing the outbox (no retry). For tests and diagnostics; the deal actions above are the
    /// normal way to talk to another node.
    pub async fn send_deal_message(&self, peer: &PublicKey, request: DealRequest) -> Result<DealResponse, DealError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.deals
            .commands
            .send(crate::node::Command::SendDeal { peer: peer.to_peer_id(), request, reply })
            .await
            .map_err(|_| DealError::Node(crate::NodeError::ShutDown))?;
        rx.await
            .map_err(|_| DealError::Node(crate::NodeError::ShutDown))?
            .map_err(|e| DealError::Refused { code: "unreachable".into(), reason: e })
    }

    /// Blocks a person on this node: their records are hidden from this node's views and their
    /// deal requests refused. Nothing is hidden from anyone else. Returns false if already blocked.
    pub fn block(&self, person: &PublicKey) -> Result<bool, DealError> {
        if *person == self.me() {
            return Err(DealError::Invalid("you cannot block yourself".into()));
        }
        Ok(self.store().block(person)?)
    }

    pub fn unblock(&self, person: &PublicKey) -> Result<bool, DealError> {
        Ok(self.store().unblock(person)?)
    }

    pub fn blocked(&self) -> Result<Vec<PublicKey>, DealError> {
        Ok(self.store().blocked()?)
    }

    /// The stored record `id` if its author (or co-signer) is not blocked.
    pub fn is_hidden(&self, record: &SignedRecord) -> bool {
        let blocked = self.store().is_blocked(record.author()).unwrap_or(false);
        blocked || record.cosigner().is_some_and(|c| self.store().is_blocked(&c).unwrap_or(false))
    }
}

/// Waits until `stored` is true or a `Stored` event for `id` arrives, at most `limit`.
async fn wait_stored(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    id: &RecordId,
    limit: Duration,
    stored: impl Fn() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if stored() {
            return true;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return stored(),
            Ok(Ok(NodeEvent::Stored { id: got, .. })) if got == *id => return true,
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => return stored(),
        }
    }
}
