//! Reputation across real nodes on loopback: after a loan completed and reviewed between A and B,
//! A sees B with one deal completed with a counterparty A trusts (A itself) and the standing the
//! engine gives; C, who dealt with nobody, sees B as unknown; a vouch of A reaches B's node and its
//! revocation removes it there; a person A blocked is shown as blocked. Revoking deal records: one
//! party's revocation of an agreement erases nothing (the other party's review of them stays, on
//! every node), a step the other party built on cannot be revoked, and an agreement both revoked is
//! annulled everywhere.

use troc_node::deals::actions::Step;
use troc_node::deals::state::DealStatus;
use troc_node::trust::Standing;
use troc_protocol::{Condition, Kind, PublicKey, Rating, RecordId};

use crate::deals::{LIMIT, has, proposal, wait_status};
use crate::support::*;

/// Polls `node`'s reputation of `who` until `check` holds (the model is rebuilt at most once a
/// second, and records travel by gossip).
async fn wait_rep(
    node: &TestNode,
    who: &PublicKey,
    what: &str,
    check: impl Fn(&troc_node::trust::PersonTrust) -> bool,
) {
    wait_until(LIMIT, what, || async { node.handle.reputation(who, 0).await.is_ok_and(|r| check(&r.person)) }).await;
}

async fn received(node: &TestNode, id: &RecordId) -> bool {
    node.handle.vouches().is_ok_and(|v| v.received.iter().any(|x| x.id == *id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reputation_after_a_reviewed_loan_vouches_revocations_and_blocks() {
    let a = spawn(60, &[], &[]).await;
    let b = spawn(61, &[], &[&a]).await;
    let c = spawn(62, &[], &[&a]).await;
    let (pa, pb, pc) = (*a.identity.public(), *b.identity.public(), *c.identity.public());
    wait_until(LIMIT, "a connected to b and c", || async { a.handle.peers().await.unwrap_or_default().len() >= 2 })
        .await;

    // Before any deal, B is unknown to A.
    let before = a.handle.reputation(&pb, 0).await.expect("reputation");
    assert_eq!((before.person.standing, before.person.evidence.deals_completed), (Standing::Unknown, 0));

    // A loan from A to B: agreed, handed over and back, completed, reviewed by both.
    let p = b.handle.propose(proposal(&pa, &pa, Kind::Lend, Some(now() + 3 * 86400))).await.expect("propose");
    wait_until(LIMIT, "a has the proposal", || async { has(&a, &p.id()).await }).await;
    let agreement = a.handle.accept_proposal(p.id()).await.expect("accept").agreement;
    wait_status(&b, &agreement, DealStatus::Agreed, "agreed on b").await;
    a.handle.deal_step(agreement, Step::Handover, String::new()).await.expect("handover");
    wait_status(&b, &agreement, DealStatus::HandedOver, "handed over on b").await;
    b.handle.acknowledge(agreement, None, Condition::AsExpected, String::new()).await.expect("ack");
    let ret = b.handle.deal_step(agreement, Step::Return, String::new()).await.expect("return");
    wait_until(LIMIT, "a has the return", || async { has(&a, &ret.id()).await }).await;
    a.handle.acknowledge(agreement, Some(ret.id()), Condition::AsExpected, String::new()).await.expect("ack");
    a.handle.deal_step(agreement, Step::Complete, String::new()).await.expect("complete");
    wait_status(&b, &agreement, DealStatus::Completed, "completed on b").await;
    let (_, ra) = a.handle.review(agreement, Rating::Positive, vec![], "Careful.".into()).await.expect("review");
    let (_, rb) = b.handle.review(agreement, Rating::Positive, vec![], "Kind.".into()).await.expect("review");
    for n in [&a, &b, &c] {
        wait_until(LIMIT, "the deal and both reviews everywhere, c included (gossip)", || async {
            has(n, &agreement).await && has(n, &ra).await && has(n, &rb).await
        })
        .await;
    }

    // A's view of B: one deal completed, one counterparty (A), whom A trusts; a positive review.
    // Established needs 30 days after the first deal with an established counterparty: probation.
    wait_rep(&a, &pb, "a sees b's completed deal", |p| p.evidence.deals_completed == 1 && p.evidence.positives >= 1)
        .await;
    let rep = a.handle.reputation(&pb, 3).await.expect("reputation");
    let e = &rep.person.evidence;
    assert_eq!((e.deals_completed, e.counterparties, e.trusted_counterparties, e.negatives), (1, 1, 1, 0), "{e:?}");
    assert_eq!(rep.person.standing, Standing::Probation, "{:?}", rep.person);
    assert!(rep.person.score > 0.0 && rep.person.rank == Some(1), "{:?}", rep.person);
    let why = rep.explanation.expect("asked for paths");
    let path = why.paths.first().expect("a path of trust from a to b");
    assert_eq!((path.hops[0].from, path.hops.last().map(|h| h.to)), (pa, Some(pb)), "{path:?}");
    assert!(path.hops.iter().all(|h| h.deals >= 1 || h.vouched), "every hop rests on evidence: {path:?}");
    assert_eq!(a.handle.reputation(&pa, 0).await.expect("self").person.standing, Standing::Viewer);
    let top = a.handle.reputation_top(10).await.expect("top");
    assert_eq!(top.people.first().map(|p| p.identity), Some(pb), "b first in a's ranking: {:?}", top.people);

    // C has the same records but no deal of its own: B is unknown to C, whatever B's evidence.
    wait_rep(&c, &pb, "c counts b's deal", |p| p.evidence.deals_completed == 1).await;
    let seen_by_c = c.handle.reputation(&pb, 3).await.expect("reputation");
    assert_eq!(seen_by_c.person.standing, Standing::Unknown, "{:?}", seen_by_c.person);
    assert_eq!(seen_by_c.person.evidence.trusted_counterparties, 0);
    assert!(seen_by_c.explanation.expect("asked").paths.is_empty(), "no path from c to b");

    // A vouches for B: the vouch reaches B's node, and A's view counts it.
    let vouch = a.handle.vouch(&pb, "Next door for ten years", Some(30)).await.expect("vouch");
    assert!(a.handle.vouches().expect("vouches").given.iter().any(|v| v.id == vouch.id()));
    wait_until(LIMIT, "b received a's vouch", || async { received(&b, &vouch.id()).await }).await;
    wait_rep(&a, &pb, "a's view counts the vouch", |p| p.evidence.vouches_received == 1).await;

    // B cannot revoke A's vouch; A revokes it: gone from B's node and from A's view.
    let refused = b.handle.revoke(&vouch.id(), "").await.expect_err("not b's record");
    assert!(matches!(refused, troc_node::reputation::ReputationError::NotYours(_)), "{refused}");
    a.handle.revoke(&vouch.id(), "Moved away").await.expect("revoke");
    wait_until(LIMIT, "the revocation removed the vouch on b", || async {
        !received(&b, &vouch.id()).await && !has(&b, &vouch.id()).await
    })
    .await;
    wait_rep(&a, &pb, "a's view no longer counts the vouch", |p| p.evidence.vouches_received == 0).await;

    // A blocks C: C is shown as blocked, and B's standing is unchanged.
    a.handle.block(&pc).expect("block");
    let blocked = a.handle.reputation(&pc, 0).await.expect("reputation");
    assert_eq!(blocked.person.standing, Standing::Blocked);
    assert_eq!(a.handle.reputation(&pb, 0).await.expect("reputation").person.standing, Standing::Probation);
    a.handle.unblock(&pc).expect("unblock");
    assert_ne!(a.handle.reputation(&pc, 0).await.expect("reputation").person.standing, Standing::Blocked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unilateral_revocation_erases_nothing_and_a_mutual_one_annuls_everywhere() {
    use troc_node::reputation::{ReputationError, RevokeEffect};
    let a = spawn(70, &[], &[]).await;
    let b = spawn(71, &[], &[&a]).await;
    let c = spawn(72, &[], &[&a]).await;
    let pa = *a.identity.public();
    wait_until(LIMIT, "a connected to b and c", || async { a.handle.peers().await.unwrap_or_default().len() >= 2 })
        .await;

    // A gives B something; handed over, acknowledged, completed; both review.
    let p = b.handle.propose(proposal(&pa, &pa, Kind::Give, None)).await.expect("propose");
    wait_until(LIMIT, "a has the proposal", || async { has(&a, &p.id()).await }).await;
    let agreement = a.handle.accept_proposal(p.id()).await.expect("accept").agreement;
    wait_status(&b, &agreement, DealStatus::Agreed, "agreed on b").await;
    let handover = a.handle.deal_step(agreement, Step::Handover, String::new()).await.expect("handover");
    wait_status(&b, &agreement, DealStatus::HandedOver, "handed over on b").await;
    b.handle.acknowledge(agreement, None, Condition::AsExpected, String::new()).await.expect("ack");
    wait_status(&a, &agreement, DealStatus::Acknowledged, "acknowledged on a").await;
    a.handle.deal_step(agreement, Step::Complete, String::new()).await.expect("complete");
    wait_status(&b, &agreement, DealStatus::Completed, "completed on b").await;
    let (_, ra) = a.handle.review(agreement, Rating::Positive, vec![], "Nice.".into()).await.expect("review");
    let (_, rb) = b.handle.review(agreement, Rating::Negative, vec![], "Broken.".into()).await.expect("review");
    for n in [&a, &b, &c] {
        wait_until(LIMIT, "the deal and both reviews on every node", || async {
            has(n, &agreement).await && has(n, &ra).await && has(n, &rb).await
        })
        .await;
    }

    // A cannot undo a handover B acknowledged.
    let refused = a.handle.revoke(&handover.id(), "").await.expect_err("built on");
    assert!(matches!(refused, ReputationError::BuiltOn(_)), "{refused}");
    assert_eq!(a.handle.metrics().rejected_total("already_built_on"), 1);

    // A, reviewed negatively by B, revokes the agreement alone: recorded and shown, nothing erased.
    let mut a_events = a.handle.subscribe();
    let one = a.handle.revoke(&agreement, "I want that review gone").await.expect("revoke");
    assert_eq!(one.effect, RevokeEffect::WaitingForOtherParty);
    for n in [&b, &c] {
        wait_until(LIMIT, "a's revocation reached the node", || async { has(n, &one.record.id()).await }).await;
    }
    for n in [&a, &b, &c] {
        assert!(has(n, &agreement).await && has(n, &rb).await, "b's review of a stays");
    }
    let seen = b.handle.deal(&agreement).expect("deal");
    assert_eq!((seen.agreement_revoked_by, seen.status), (vec![pa], DealStatus::Completed));
    assert!(seen.reviews.iter().any(|r| r.review == Some(rb) && r.state == "revealed"), "{:?}", seen.reviews);

    // B revokes it too: annulled on every node, the deal's records with it.
    let two = b.handle.revoke(&agreement, "We both agree it never happened").await.expect("revoke");
    assert_eq!(two.effect, RevokeEffect::Annulled);
    for n in [&a, &b, &c] {
        wait_until(LIMIT, "annulled on every node", || async {
            !has(n, &agreement).await && !has(n, &ra).await && !has(n, &rb).await && !has(n, &handover.id()).await
        })
        .await;
    }
    next_event(
        &mut a_events,
        LIMIT,
        "the annulment on a's watch stream",
        |e| matches!(e, troc_node::events::NodeEvent::Deal { kind: "deal_annulled", deal, .. } if *deal == agreement),
    )
    .await;
}
