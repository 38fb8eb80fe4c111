//! Several real nodes on loopback: gossip, edits, withdrawals, catch-up after being offline,
//! hostile records, restarts and partitions.

use std::collections::BTreeSet;
use std::time::Duration;

use troc_node::events::NodeEvent;
use troc_node::store::Scope;
use troc_protocol::{Body, ListingKey, RecordId, Signed};

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The set of live record ids of a scope in a node's store.
fn set_of(node: &TestNode, scope: &Scope) -> BTreeSet<RecordId> {
    node.handle.store().sync_items(scope, now()).expect("sync items").into_iter().map(|(_, id)| id).collect()
}

fn revision_at(node: &TestNode, author: &troc_protocol::PublicKey, key: u8) -> Option<u32> {
    node.handle.store().latest_listing(author, &ListingKey([key; 16])).expect("store read").map(|l| l.body().revision)
}

async fn connected_count(node: &TestNode) -> usize {
    node.handle.peers().await.map(|p| p.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_edit_and_withdrawal_reach_five_nodes() {
    let c = ["north"];
    let n0 = spawn(0, &c, &[]).await;
    let n1 = spawn(1, &c, &[&n0]).await;
    let n2 = spawn(2, &c, &[&n1]).await;
    let n3 = spawn(3, &c, &[&n2]).await;
    let n4 = spawn(4, &c, &[&n3, &n0]).await;
    let nodes = [&n0, &n1, &n2, &n3, &n4];
    for n in nodes {
        wait_until(LIMIT, "every node has a peer", || async { connected_count(n).await > 0 }).await;
    }
    let author = n0.identity.clone();

    let v1 = sign_listing(&author, listing(1, 1, "north", "Cordless drill"));
    let r = n0.handle.publish(&v1.clone().into_any()).await.expect("publish");
    assert!(r.is_stored(), "{r:?}");
    for n in nodes {
        wait_until(LIMIT, "revision 1 everywhere", || async { revision_at(n, author.public(), 1) == Some(1) }).await;
    }

    let v2 = sign_listing(&author, listing(1, 2, "north", "Cordless drill, with two batteries"));
    n0.handle.publish(&v2.clone().into_any()).await.expect("publish edit");
    for n in nodes {
        wait_until(LIMIT, "revision 2 replaces 1 everywhere", || async {
            revision_at(n, author.public(), 1) == Some(2)
        })
        .await;
        assert!(!n.handle.store().contains(&v1.id()).unwrap(), "the superseded revision is gone");
    }

    let w = withdrawal(&author, 1);
    n0.handle.publish(&w.clone().into_any()).await.expect("publish withdrawal");
    for n in nodes {
        wait_until(LIMIT, "withdrawn everywhere", || async {
            revision_at(n, author.public(), 1).is_none() && n.handle.store().contains(&w.id()).unwrap_or(false)
        })
        .await;
    }

    // A node that never saw the withdrawal holds the old revision and joins: its copy is refused by
    // everyone, and it drops its own copy once catch-up brings it the withdrawal.
    let late = spawn(5, &c, &[]).await;
    let stored = late.handle.ingest_local(vec![v2.bytes().to_vec()]).await.expect("ingest");
    assert!(stored[0].is_stored());
    late.handle.dial(n4.handle.dial_addrs().await.unwrap()[0].clone()).await.expect("dial");
    wait_until(LIMIT, "the late node learns the withdrawal", || async {
        late.handle.store().contains(&w.id()).unwrap_or(false) && revision_at(&late, author.public(), 1).is_none()
    })
    .await;
    let _ = late.handle.sync_now().await;
    for n in nodes {
        assert_eq!(revision_at(n, author.public(), 1), None, "the old revision stays refused");
        assert!(!n.handle.store().contains(&v2.id()).unwrap());
    }
    for n in nodes.into_iter().chain([&late]) {
        n.handle.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_node_catches_up_exactly() {
    let c = ["south"];
    let a = spawn(10, &c, &[]).await;
    let b = spawn(11, &c, &[&a]).await;
    wait_until(LIMIT, "a and b connected", || async { connected_count(&a).await > 0 }).await;

    // 500 listings from 10 neighbours, then 20 of them withdrawn, all while c is offline.
    let people: Vec<_> = (100..110).map(person).collect();
    let mut listings = Vec::new();
    for i in 0..500u32 {
        let who = &people[(i % 10) as usize];
        let mut l = listing((i / 10) as u8, 1, "south", &format!("Thing number {i}"));
        l.key = ListingKey([(i / 10) as u8; 16]);
        listings.push(sign_listing(who, l));
    }
    let bytes: Vec<Vec<u8>> = listings.iter().map(|l| l.bytes().to_vec()).collect();
    for chunk in bytes.chunks(100) {
        let r = a.handle.ingest_local(chunk.to_vec()).await.expect("ingest");
        assert!(r.iter().all(|r| r.is_stored()), "{r:?}");
    }
    let withdrawals: Vec<Vec<u8>> = listings[..20]
        .iter()
        .map(|l| {
            let who = people.iter().find(|p| p.public() == l.author()).unwrap();
            withdrawal(who, l.body().key.0[0]).bytes().to_vec()
        })
        .collect();
    let r = a.handle.ingest_local(withdrawals).await.expect("ingest withdrawals");
    assert!(r.iter().all(|r| r.is_stored()), "{r:?}");
    b.handle.sync_now().await.expect("sync");

    let south = Scope::Community("south".into());
    assert_eq!(set_of(&a, &south).len(), 480);
    assert_eq!(set_of(&a, &Scope::Global).len(), 20);
    wait_until(LIMIT, "b has what a has", || async { set_of(&b, &south) == set_of(&a, &south) }).await;

    // c comes online, connects to b only, and catches up.
    let c_node = spawn(12, &c, &[&b]).await;
    wait_until(LIMIT, "c converges with a and b", || async {
        set_of(&c_node, &south) == set_of(&a, &south) && set_of(&c_node, &Scope::Global) == set_of(&a, &Scope::Global)
    })
    .await;
    for l in &listings[..20] {
        assert!(!c_node.handle.store().contains(&l.id()).unwrap(), "a withdrawn listing never reaches c");
    }
    // A catch-up this large reports its progress, up to the end (the last event may come just after
    // the store has converged: the session reports a chunk once the writer has stored it).
    let mut c_node = c_node;
    let mut progress = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !progress.iter().any(|&(f, t)| f == t) {
        match tokio::time::timeout_at(deadline, c_node.events.recv()).await {
            Ok(Ok(troc_node::events::NodeEvent::SyncProgress { fetched, total, .. })) => {
                progress.push((fetched, total))
            }
            Ok(Ok(_)) => {}
            other => panic!("no complete catch-up progress: {progress:?} ({other:?})"),
        }
    }
    assert!(progress.first().is_some_and(|&(f, t)| f == 0 && t >= 256), "{progress:?}");
    for n in [&a, &b, &c_node] {
        n.handle.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_rejected_not_stored_not_forwarded() {
    let c = ["east"];
    let victim = spawn(20, &c, &[]).await;
    let mut witness = spawn(21, &c, &[&victim]).await;
    let hostile = spawn(22, &c, &[&victim]).await;
    wait_until(LIMIT, "victim has both peers", || async { connected_count(&victim).await >= 2 }).await;

    let me = hostile.identity.clone();
    let scope = "community/east";
    // Wait until gossip from the hostile node can reach the victim (subscriptions exchanged).
    let probe = sign_listing(&me, listing(9, 1, "east", "An honest first listing"));
    wait_until(LIMIT, "gossip path open", || async {
        hostile.handle.gossip_raw(scope, probe.bytes().to_vec()).await.is_ok()
    })
    .await;
    wait_until(LIMIT, "the honest listing arrives", || async {
        victim.handle.store().contains(&probe.id()).unwrap_or(false)
    })
    .await;

    let mut forged = sign_listing(&me, listing(1, 1, "east", "Forged")).bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let someone_else = sign_listing(&person(999), listing(2, 1, "east", "Not mine to publish"));
    let future = Signed::sign(&me, now() + 3600, listing(3, 1, "east", "From the future")).unwrap();
    let mut oversized = future.bytes()[..42].to_vec();
    oversized.resize(troc_protocol::limits::MAX_RECORD_BYTES + 200, 0x41);
    let malformed = vec![1u8, 2, 0xff, 0xff, 0xff];
    for bytes in [forged.clone(), someone_else.bytes().to_vec(), future.bytes().to_vec(), oversized, malformed] {
        hostile.handle.gossip_raw(scope, bytes).await.expect("hostile publish");
    }

    let codes = ["bad_signature", "wrong_publisher", "from_future", "too_large", "malformed"];
    let all_rejected = || async {
        let m = victim.handle.metrics();
        codes.iter().all(|c| m.rejected.get(&troc_node::metrics::Source::Gossip).and_then(|r| r.get(c)).is_some())
    };
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !all_rejected().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the victim did not reject all five: {:?}",
            victim.handle.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval, not synchronisation
    }
    for id in [someone_else.id(), future.id()] {
        assert!(!victim.handle.store().contains(&id).unwrap(), "not stored");
        assert!(!witness.handle.store().contains(&id).unwrap(), "not forwarded");
    }
    // The honest listing was forwarded to the witness; none of the hostile ones were.
    wait_until(LIMIT, "honest gossip forwarded", || async {
        witness.handle.store().contains(&probe.id()).unwrap_or(false)
    })
    .await;
    // The witness may have found the hostile node itself (Kademlia) and refused its records too, but
    // nothing hostile ever came to it through the victim: the victim forwarded none of it.
    let victim_id = victim.handle.peer_id();
    while let Ok(e) = witness.events.try_recv() {
        if let NodeEvent::Rejected { peer, code } = e {
            assert_ne!(peer, victim_id, "the victim forwarded a {code} record");
        }
    }
    let score = victim.handle.peer_score(hostile.handle.peer_id()).await.unwrap().expect("scored");
    assert!(score < 0.0, "the hostile peer's score dropped: {score}");
    for n in [&victim, &witness, &hostile] {
        n.handle.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_shutdown_closes_connections() {
    let c = ["west"];
    let node = spawn(30, &c, &[]).await;
    let mut peer = spawn(31, &c, &[&node]).await;
    wait_until(LIMIT, "connected", || async { connected_count(&node).await > 0 }).await;
    let seen = peer.handle.peers().await.unwrap();
    assert_eq!(seen[0].peer_id, node.handle.peer_id());
    assert!(seen[0].addresses[0].starts_with("/ip4/127.0.0.1/tcp/"), "{seen:?}");
    assert!(!seen[0].relayed);
    let me = node.identity.clone();
    let mut ids = Vec::new();
    for k in 0..3u8 {
        let l = sign_listing(&me, listing(k, 1, "west", &format!("Ladder {k}")));
        node.handle.publish(&l.clone().into_any()).await.expect("publish");
        ids.push(l.id());
    }
    let node_peer = node.handle.peer_id();
    node.handle.shutdown().await.expect("clean shutdown");
    next_event(
        &mut peer.events,
        LIMIT,
        "the peer sees the connection close",
        |e| matches!(e, NodeEvent::PeerDisconnected { peer } if *peer == node_peer),
    )
    .await;
    assert!(node.handle.publish(&sign_listing(&me, listing(9, 1, "west", "x")).into_any()).await.is_err());

    // A restart is a new process: nothing of the old node, its handle included, holds the database.
    let TestNode { home, identity, handle, events } = node;
    drop((handle, events));
    let again = spawn_in(home, identity, &c, &[]).await;
    assert!(again.handle.store().open_repair().is_none(), "the store was closed cleanly: no repair at start");
    for id in &ids {
        let r = again.handle.store().get(id).expect("read").expect("still there");
        assert!(matches!(r.body(), Body::Listing(_)));
    }
    again.handle.shutdown().await.expect("clean shutdown");
    peer.handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_groups_converge_after_healing() {
    let c = ["harbour"];
    let a = spawn(40, &c, &[]).await;
    let b = spawn(41, &c, &[&a]).await;
    let x = spawn(42, &c, &[]).await;
    let y = spawn(43, &c, &[&x]).await;
    wait_until(LIMIT, "both groups connected", || async {
        connected_count(&a).await > 0 && connected_count(&x).await > 0
    })
    .await;
    // Each side publishes while apart.
    for (i, n) in [&a, &b, &x, &y].into_iter().enumerate() {
        for k in 0..5u8 {
            let l = sign_listing(&n.identity, listing(k, 1, "harbour", &format!("Item {i}-{k}")));
            n.handle.publish(&l.into_any()).await.expect("publish");
        }
    }
    let harbour = Scope::Community("harbour".into());
    wait_until(LIMIT, "each side converges internally", || async {
        set_of(&a, &harbour).len() == 10
            && set_of(&b, &harbour).len() == 10
            && set_of(&x, &harbour).len() == 10
            && set_of(&y, &harbour).len() == 10
    })
    .await;
    assert_ne!(set_of(&a, &harbour), set_of(&x, &harbour));
    // Heal: one link between the groups.
    b.handle.dial(x.handle.dial_addrs().await.unwrap()[0].clone()).await.expect("heal");
    wait_until(LIMIT, "all four converge", || async {
        let s = set_of(&a, &harbour);
        s.len() == 20 && s == set_of(&b, &harbour) && s == set_of(&x, &harbour) && s == set_of(&y, &harbour)
    })
    .await;
    for n in [&a, &b, &x, &y] {
        n.handle.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_pushing_forged_records_through_catch_up_is_disconnected() {
    let c = ["quay"];
    let victim = spawn(50, &c, &[]).await;
    let hostile = spawn(51, &c, &[&victim]).await;
    let victim_id = victim.handle.peer_id();
    wait_until(LIMIT, "connected", || async { connected_count(&victim).await > 0 }).await;

    // 30 distinct listings with a broken signature: more than the 20 strikes a peer may collect.
    let forged: Vec<Vec<u8>> = (0..30u8)
        .map(|k| {
            let mut b = sign_listing(&hostile.identity, listing(k, 1, "quay", &format!("Forged {k}"))).bytes().to_vec();
            let last = b.len() - 1;
            b[last] ^= 0x01;
            b
        })
        .collect();
    // The victim may cut the connection before it even answers: an abusive peer gets no answer.
    match hostile.handle.sync_raw(victim_id, troc_node::sync::SyncRequest::Push { records: forged.clone() }).await {
        Ok(troc_node::sync::SyncResponse::Pushed { accepted: 0 }) | Err(_) => {}
        Ok(other) => panic!("forged records were accepted: {other:?}"),
    }

    wait_until(LIMIT, "the victim disconnects the hostile peer", || async {
        victim.handle.metrics().peers_disconnected_for_abuse >= 1 && connected_count(&victim).await == 0
    })
    .await;
    let m = victim.handle.metrics();
    assert_eq!(m.rejected[&troc_node::metrics::Source::Sync].get("bad_signature"), Some(&30));
    for bytes in &forged {
        let id = troc_protocol::decode(bytes).expect("decodes").id();
        assert!(!victim.handle.store().contains(&id).unwrap(), "nothing forged is stored");
    }
    // It is refused when it comes back.
    let _ = hostile.handle.dial(victim.handle.dial_addrs().await.unwrap()[0].clone()).await;
    assert_eq!(connected_count(&victim).await, 0, "a banned peer stays out");
    victim.handle.shutdown().await.expect("clean shutdown");
    hostile.handle.shutdown().await.expect("clean shutdown");
}

/// Dialing a peer that is already connected as often as the per-peer limit allows answers
/// "connected", not a dial error (`troc connect` to a peer that a deal retry and a hole punch had
/// just reached, in the NAT test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_a_peer_connected_up_to_the_per_peer_limit_answers_connected() {
    let a = spawn(30, &["west"], &[]).await;
    let b = spawn(31, &["west"], &[]).await;
    let addr = b.handle.dial_addrs().await.expect("addresses")[0].clone();
    let limit = troc_node::config::Limits::default().max_connections_per_peer;
    for i in 0..=limit {
        let peer = a.handle.dial(addr.clone()).await.unwrap_or_else(|e| panic!("dial {i}: {e}"));
        assert_eq!(peer, b.identity.public().to_peer_id());
    }
    let peers = a.handle.peers().await.expect("peers");
    assert!(peers.iter().any(|p| p.peer_id == b.identity.public().to_peer_id()), "{peers:?}");
}
