//! Deals across real nodes on loopback: a loan with one party offline for part of it (proposal,
//! acceptance queued until the proposer is back, handover and return acknowledged, completion,
//! blind reviews revealed), a swap, a give, and a no-show reviewed.

use std::time::Duration;

use troc_node::deals::actions::Step;
use troc_node::deals::state::DealStatus;
use troc_protocol::{CancelReason, Condition, Kind, ListingKey, Proposal, PublicKey, Rating, RecordId, RecordType};

use crate::support::*;

pub(crate) const LIMIT: Duration = Duration::from_secs(40);

/// Proposals made by [`proposal`] so far.
static PROPOSALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn proposal(to: &PublicKey, listing_author: &PublicKey, kind: Kind, end: Option<u64>) -> Proposal {
    Proposal {
        counterparty: *to,
        listing_author: *listing_author,
        listing_key: ListingKey([7; 16]),
        listing_revision: 1,
        kind,
        start: now(),
        end,
        // Numbered: two otherwise equal proposals signed in the same second would be one record.
        message: format!(
            "Could I borrow it on Saturday? I live two streets away. ({})",
            PROPOSALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        in_return: if matches!(kind, Kind::Swap) { "My ladder".into() } else { String::new() },
        supersedes: None,
    }
}

async fn status_at(node: &TestNode, id: &RecordId) -> Option<DealStatus> {
    node.handle.deal(id).ok().map(|v| v.status)
}

pub(crate) async fn wait_status(node: &TestNode, id: &RecordId, want: DealStatus, what: &str) {
    wait_until(LIMIT, what, || async { status_at(node, id).await == Some(want) }).await;
}

pub(crate) async fn has(node: &TestNode, id: &RecordId) -> bool {
    node.handle.store().contains(id).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_with_the_borrower_offline_for_part_of_it() {
    let lender = spawn(40, &["north"], &[]).await;
    let borrower = spawn(41, &["north"], &[&lender]).await;
    let l = *lender.identity.public();
    wait_until(LIMIT, "connected", || async { !lender.handle.peers().await.unwrap_or_default().is_empty() }).await;

    // The borrower proposes; the proposal travels directly and is private.
    let p = borrower.handle.propose(proposal(&l, &l, Kind::Lend, Some(now() + 3 * 86400))).await.expect("propose");
    wait_until(LIMIT, "the lender has the proposal", || async { has(&lender, &p.id()).await }).await;
    assert_eq!(lender.handle.inbox().expect("inbox")[0].kind, "proposal");

    // The borrower goes offline; the lender accepts: the agreement waits in the outbox.
    borrower.handle.shutdown().await.expect("shutdown");
    // A restart is a new process: nothing of the old node, its handle included, holds the database.
    let TestNode { home, identity, handle, events } = borrower;
    drop((handle, events));
    let accepted = lender.handle.accept_proposal(p.id()).await.expect("accept");
    assert!(!accepted.agreed, "the proposer is offline: not countersigned yet");

    // The borrower is back: its node countersigns, both store the same co-signed agreement.
    let borrower = spawn_in(home, identity, &["north"], &[&lender]).await;
    let agreement = accepted.agreement;
    for n in [&lender, &borrower] {
        wait_status(n, &agreement, DealStatus::Agreed, "agreed on both nodes").await;
    }
    let stored = lender.handle.store().get(&agreement).unwrap().unwrap();
    assert_eq!(stored.signatures().count(), 2, "signed by both parties over the same body");
    assert_eq!(stored.bytes(), borrower.handle.store().get(&agreement).unwrap().unwrap().bytes());

    // The borrower asks for two more days; the lender accepts it from the inbox.
    let due = lender.handle.deal(&agreement).unwrap().due.expect("a loan has a due date");
    let mut lender_events = lender.handle.subscribe();
    let request = borrower.handle.request_extension(agreement, due + 2 * 86400).await.expect("extend");
    next_event(&mut lender_events, LIMIT, "the extension request", |e| {
        matches!(e, troc_node::events::NodeEvent::Deal { kind: "deal_extension_requested", record: Some(r), .. } if *r == request)
    })
    .await;
    assert!(lender.handle.inbox().unwrap().iter().any(|i| i.kind == "extension_request" && i.record == Some(request)));
    lender.handle.accept_extension(request).await.expect("accept the extension");
    for n in [&lender, &borrower] {
        wait_until(LIMIT, "the new due date on both nodes", || async {
            n.handle.deal(&agreement).is_ok_and(|v| v.due == Some(due + 2 * 86400))
        })
        .await;
    }

    // Handover, acknowledged; return, acknowledged; completion.
    let handover = lender.handle.deal_step(agreement, Step::Handover, "Charged.".into()).await.expect("handover");
    wait_until(LIMIT, "the borrower has the handover", || async { has(&borrower, &handover.id()).await }).await;
    borrower.handle.acknowledge(agreement, None, Condition::AsExpected, String::new()).await.expect("ack");
    wait_status(&lender, &agreement, DealStatus::Acknowledged, "handover acknowledged").await;
    let ret = borrower.handle.deal_step(agreement, Step::Return, "Thanks!".into()).await.expect("return");
    wait_until(LIMIT, "the lender has the return", || async { has(&lender, &ret.id()).await }).await;
    lender.handle.acknowledge(agreement, Some(ret.id()), Condition::AsExpected, String::new()).await.expect("ack");
    lender.handle.deal_step(agreement, Step::Complete, String::new()).await.expect("complete");
    for n in [&lender, &borrower] {
        wait_status(n, &agreement, DealStatus::Completed, "completed on both nodes").await;
    }

    // Blind reviews: hidden until both commitments are in, then revealed on both nodes.
    let (_, lender_review) =
        lender.handle.review(agreement, Rating::Positive, vec![], "Careful.".into()).await.unwrap();
    let view = borrower.handle.deal(&agreement).expect("deal");
    wait_until(LIMIT, "the borrower sees a hidden review", || async {
        borrower.handle.deal(&agreement).is_ok_and(|v| v.reviews.iter().any(|r| r.state == "hidden"))
    })
    .await;
    assert!(view.reviews.iter().all(|r| r.text.is_none()), "a hidden review shows no content");
    assert!(!has(&borrower, &lender_review).await, "not revealed before the other commitment");
    let (_, borrower_review) =
        borrower.handle.review(agreement, Rating::Positive, vec![], "Kind.".into()).await.unwrap();
    for n in [&lender, &borrower] {
        wait_until(LIMIT, "both reviews revealed everywhere", || async {
            has(n, &lender_review).await && has(n, &borrower_review).await
        })
        .await;
    }
    let v = lender.handle.deal(&agreement).expect("deal");
    assert!(v.reviews.iter().all(|r| r.state == "revealed"), "{:?}", v.reviews);
    assert_eq!(
        lender.handle.deal(&agreement).unwrap().records.len(),
        borrower.handle.deal(&agreement).unwrap().records.len(),
        "both nodes end in the same deal state"
    );
    assert!(
        lender
            .handle
            .store()
            .sync_items(&troc_node::store::Scope::Global, now())
            .unwrap()
            .iter()
            .all(|(_, id)| *id != p.id()),
        "the proposal is in no catch-up scope"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_a_give_and_a_no_show() {
    let a = spawn(42, &[], &[]).await;
    let b = spawn(43, &[], &[&a]).await;
    let (pa, pb) = (*a.identity.public(), *b.identity.public());
    wait_until(LIMIT, "connected", || async { !a.handle.peers().await.unwrap_or_default().is_empty() }).await;

    let agree = |kind: Kind| {
        let (a, b) = (&a, &b);
        async move {
            let p = b.handle.propose(proposal(&pa, &pa, kind, None)).await.expect("propose");
            wait_until(LIMIT, "proposal delivered", || async { has(a, &p.id()).await }).await;
            let acc = a.handle.accept_proposal(p.id()).await.expect("accept");
            assert!(acc.agreed, "both online: agreed at once");
            wait_status(b, &acc.agreement, DealStatus::Agreed, "agreed").await;
            acc.agreement
        }
    };

    // A swap: both hand over, then it is completed.
    let swap = agree(Kind::Swap).await;
    a.handle.deal_step(swap, Step::Handover, String::new()).await.unwrap();
    b.handle.deal_step(swap, Step::Handover, String::new()).await.unwrap();
    b.handle.deal_step(swap, Step::Complete, String::new()).await.unwrap();
    wait_status(&a, &swap, DealStatus::Completed, "the swap completed").await;

    // A give: handed over, acknowledged, completed.
    let give = agree(Kind::Give).await;
    a.handle.deal_step(give, Step::Handover, String::new()).await.unwrap();
    wait_status(&b, &give, DealStatus::HandedOver, "the gift handed over").await;
    b.handle.acknowledge(give, None, Condition::AsExpected, String::new()).await.unwrap();
    a.handle.deal_step(give, Step::Complete, String::new()).await.unwrap();
    wait_status(&b, &give, DealStatus::Completed, "the give completed").await;

    // A no-show: the giver waits in vain, says so, and reviews the deal.
    let noshow = agree(Kind::Give).await;
    a.handle.cancel_deal(noshow, CancelReason::NoShow, "Never came.".into()).await.unwrap();
    wait_status(&b, &noshow, DealStatus::NoShow, "no-show on both").await;
    let (commitment, _) = a.handle.review(noshow, Rating::Negative, vec![], "Did not come.".into()).await.unwrap();
    wait_until(LIMIT, "the commitment reached the other party", || async { has(&b, &commitment.id()).await }).await;
    let reviews = b.handle.deal(&noshow).unwrap().reviews;
    assert_eq!(reviews.len(), 1);
    assert_eq!((reviews[0].state, reviews[0].subject), ("hidden", pb));

    // A counter-proposal accepted, then a dispute.
    let end = now() + 3 * 86400;
    let first = b.handle.propose(proposal(&pa, &pa, Kind::Lend, Some(end))).await.expect("propose");
    wait_until(LIMIT, "proposal delivered", || async { has(&a, &first.id()).await }).await;
    let mut shorter = proposal(&pb, &pa, Kind::Lend, Some(end - 86400));
    shorter.message = "Two days only.".into();
    let counter = a.handle.counter(first.id(), shorter).await.expect("counter");
    wait_status(&b, &counter.id(), DealStatus::Countered, "countered on the proposer's node").await;
    let lent = b.handle.accept_proposal(counter.id()).await.expect("accept the counter");
    assert!(lent.agreed, "both online: agreed at once");
    wait_status(&a, &lent.agreement, DealStatus::Agreed, "the counter agreed on both").await;
    assert_eq!(a.handle.deal(&lent.agreement).unwrap().due, Some(end - 86400), "the countered due date");
    b.handle.cancel_deal(lent.agreement, CancelReason::Dispute, "Not as described.".into()).await.unwrap();
    wait_status(&a, &lent.agreement, DealStatus::Disputed, "disputed on both").await;

    // Declined and withdrawn proposals stay between the two.
    let p = b.handle.propose(proposal(&pa, &pa, Kind::Give, None)).await.unwrap();
    wait_until(LIMIT, "proposal delivered", || async { has(&a, &p.id()).await }).await;
    let c = a.handle.close_proposal(p.id(), "Sorry, gone.".into()).await.unwrap();
    assert_eq!(c.record_type(), RecordType::Cancellation);
    wait_status(&b, &p.id(), DealStatus::Declined, "declined on the proposer's node").await;

    // A blocked person's proposals are refused.
    a.handle.block(&pb).unwrap();
    let mut ev = b.handle.subscribe();
    let mut blocked = proposal(&pa, &pa, Kind::Give, None);
    blocked.message = "Please?".into();
    let refused = b.handle.propose(blocked).await.unwrap();
    next_event(&mut ev, LIMIT, "the proposal is refused", |e| {
        matches!(e, troc_node::events::NodeEvent::Deal { kind: "deal_message_refused", record: Some(id), .. } if *id == refused.id())
    })
    .await;
    assert!(!has(&a, &refused.id()).await);
    // And their deals are hidden from a's views.
    assert!(a.handle.deals().unwrap().iter().all(|v| v.proposer != pb && v.receiver != pb));
    assert!(a.handle.inbox().unwrap().iter().all(|i| i.peer != pb));
}

/// Waits for a `deal_*` event of `kind` about `deal` on `rx`.
async fn deal_event(
    rx: &mut tokio::sync::broadcast::Receiver<troc_node::events::NodeEvent>,
    kind: &'static str,
    deal: RecordId,
    what: &str,
) {
    next_event(
        rx,
        LIMIT,
        what,
        |e| matches!(e, troc_node::events::NodeEvent::Deal { kind: k, deal: d, .. } if *k == kind && *d == deal),
    )
    .await;
}

fn inbox_has(node: &TestNode, kind: &str, deal: RecordId) -> bool {
    node.handle.inbox().expect("inbox").iter().any(|i| i.kind == kind && i.deal == deal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_before_the_due_date_and_when_overdue_on_both_nodes() {
    let lender = spawn(44, &[], &[]).await;
    let borrower = spawn(45, &[], &[&lender]).await;
    let l = *lender.identity.public();
    wait_until(LIMIT, "connected", || async { !lender.handle.peers().await.unwrap_or_default().is_empty() }).await;
    let p = borrower.handle.propose(proposal(&l, &l, Kind::Lend, Some(now() + 3 * 86400))).await.expect("propose");
    wait_until(LIMIT, "the lender has the proposal", || async { has(&lender, &p.id()).await }).await;
    let agreement = lender.handle.accept_proposal(p.id()).await.expect("accept").agreement;
    for n in [&lender, &borrower] {
        wait_status(n, &agreement, DealStatus::Agreed, "agreed on both nodes").await;
        assert!(!inbox_has(n, "due_soon", agreement) && !inbox_has(n, "overdue", agreement), "not due yet");
    }

    // Two days and an hour later (the nodes' deal clocks moved, no waiting): due within a day.
    let mut events = [lender.handle.subscribe(), borrower.handle.subscribe()];
    for n in [&lender, &borrower] {
        n.handle.deal_clock().advance(2 * 86400 + 3600);
    }
    for (n, rx) in [&lender, &borrower].into_iter().zip(events.iter_mut()) {
        deal_event(rx, "deal_due_soon", agreement, "the due-soon reminder on the watch stream").await;
        assert!(inbox_has(n, "due_soon", agreement), "due soon in the inbox");
    }

    // A day later: overdue, once.
    for n in [&lender, &borrower] {
        n.handle.deal_clock().advance(86400);
    }
    for (n, rx) in [&lender, &borrower].into_iter().zip(events.iter_mut()) {
        deal_event(rx, "deal_overdue", agreement, "the overdue reminder on the watch stream").await;
        assert!(inbox_has(n, "overdue", agreement) && !inbox_has(n, "due_soon", agreement), "overdue in the inbox");
    }
    // Once returned, no more reminder in the inbox.
    lender.handle.deal_step(agreement, Step::Handover, String::new()).await.expect("handover");
    wait_status(&borrower, &agreement, DealStatus::HandedOver, "handed over").await;
    borrower.handle.deal_step(agreement, Step::Return, String::new()).await.expect("return");
    wait_status(&lender, &agreement, DealStatus::Returned, "returned").await;
    assert!(!inbox_has(&lender, "overdue", agreement));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_the_deal_rate_is_refused_and_counted_and_honest_deals_go_through() {
    use troc_node::deals::{DealAnswer, DealMessage, DealRequest};
    let b = spawn(46, &[], &[]).await;
    let flooder = spawn(47, &[], &[&b]).await;
    let honest = spawn(48, &[], &[&b]).await;
    let pb = *b.identity.public();
    wait_until(LIMIT, "b connected to both", || async { b.handle.peers().await.unwrap_or_default().len() >= 2 }).await;

    // A message that is not a record: a typed refusal, counted; nothing breaks.
    let bad = DealRequest { msg: 1, body: DealMessage::Record { bytes: vec![0; 8] } };
    let answer = flooder.handle.send_deal_message(&pb, bad).await.expect("answered").answer;
    let DealAnswer::Refused { code, .. } = answer else { panic!("garbage accepted: {answer:?}") };
    assert_eq!(b.handle.metrics().rejected_total(&code), 1, "{code} counted, once");

    // 160 messages, over the burst of 50 at 5 a second: one valid proposal again and again
    // (invalid records would get the flooder disconnected for abuse before its rate runs out).
    let bytes = troc_protocol::Signed::sign(&flooder.identity, now(), proposal(&pb, &pb, Kind::Give, None))
        .expect("sign")
        .bytes()
        .to_vec();
    // Eight at a time (under the protocol's 16 concurrent streams), as fast as they are answered.
    let mut sent = tokio::task::JoinSet::new();
    for worker in 0..8u64 {
        let h = flooder.handle.clone();
        let bytes = bytes.clone();
        sent.spawn(async move {
            let mut answers = Vec::new();
            for n in 0..20u64 {
                let request = DealRequest { msg: worker * 100 + n, body: DealMessage::Record { bytes: bytes.clone() } };
                answers.push(h.send_deal_message(&pb, request).await);
            }
            answers
        });
    }
    let mut limited = 0u64;
    let mut answered = 0u64;
    while let Some(r) = sent.join_next().await {
        for r in r.expect("task") {
            let resp = r.expect("answered");
            answered += 1;
            if matches!(&resp.answer, DealAnswer::Refused { code, .. } if code == "deal_rate_limited") {
                limited += 1;
            }
        }
    }
    assert!(limited >= 20, "a typed refusal past the burst ({limited} of {answered})");
    let counted = b.handle.metrics().rejected_total("deal_rate_limited");
    assert!(counted >= limited, "counted in the metrics ({counted} < {limited})");

    // Another person's deal goes through at once, and the flooder's own, once its rate allows.
    let p = honest.handle.propose(proposal(&pb, &pb, Kind::Give, None)).await.expect("propose");
    wait_until(LIMIT, "the honest proposal arrived", || async { has(&b, &p.id()).await }).await;
    let q = flooder.handle.propose(proposal(&pb, &pb, Kind::Give, None)).await.expect("propose");
    wait_until(LIMIT, "the flooder's proposal arrived, retried", || async { has(&b, &q.id()).await }).await;
}

/// The same proposal signed twice within one second is one record (its id covers the content and
/// the second). Proposing it again while its deal is open names that deal (a second click); once
/// the deal is over, it is refused with a reason, rather than answered with the old, closed deal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_very_same_proposal_again_names_its_open_deal_and_is_refused_once_that_deal_is_over() {
    let b = spawn(93, &["north"], &[]).await;
    let lister = person(94);
    let pa = *lister.public();
    // Each attempt needs its three calls within one second; a second boundary between them makes
    // the later calls new records, and the attempt is made again.
    for attempt in 0..5 {
        let p = proposal(&pa, &pa, Kind::Give, None);
        let first = b.handle.propose(p.clone()).await.expect("propose");
        let again = b.handle.propose(p.clone()).await.expect("propose again while open");
        if again.id() != first.id() {
            continue;
        }
        b.handle.close_proposal(first.id(), "Changed my mind.".into()).await.expect("withdraw");
        assert_eq!(b.handle.deal(&first.id()).unwrap().status, DealStatus::Withdrawn);
        match b.handle.propose(p).await {
            Err(e) => {
                let message = e.to_string();
                assert_eq!(e.code(), "invalid_request", "{message}");
                assert!(message.contains("already started deal") && message.contains("withdrawn"), "{message}");
                b.handle.shutdown().await.expect("clean shutdown");
                return;
            }
            Ok(r) if r.id() != first.id() => continue, // a new second: a new proposal
            Ok(_) => panic!("attempt {attempt}: the withdrawn deal's proposal was answered as if new"),
        }
    }
    panic!("five attempts each crossed a second boundary");
}
