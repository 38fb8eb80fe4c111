//! Partition and heal at small scale (20 real nodes in-process): the nodes are split into two groups
//! of 10 whose links are cut (`troc_node::link`: connections across break and new ones are refused),
//! both groups publish while apart, then the links are healed and each node of one group dials one
//! node of the other. Every node must end with every record after at most one catch-up session per
//! peer and scope: convergence within one round of catch-up. The 100-node simulation with realistic
//! links and its figures is `node/benches/scale.rs` (`docs/reliability.md`, section 4).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use troc_node::config::{NodeConfig, Timing};
use troc_node::events::NodeEvent;
use troc_node::link::{self, LinkProfile, LinkShaper};
use troc_node::metrics::Source;
use troc_node::node::{Node, NodeHandle};
use troc_protocol::RecordId;

use crate::support::{listing, person, sign_listing, wait_until};

const COMMUNITY: &str = "riverside";
const NODES: usize = 20;
const GROUP: usize = NODES / 2;
/// Records each node publishes while the groups are apart.
const PER_NODE: usize = 2;
const LIMIT: Duration = Duration::from_secs(40);

fn group(i: usize) -> usize {
    i / GROUP
}

/// What the test hears from the nodes: which records each stored (and how), and the catch-up sessions
/// each finished after the heal (its own sessions, by peer and scope).
#[derive(Default)]
struct Seen {
    stored: Vec<HashMap<RecordId, Source>>,
    healed: bool,
    sessions_after_heal: Vec<Vec<(String, String)>>,
}

async fn listen(i: usize, mut rx: broadcast::Receiver<NodeEvent>, seen: Arc<Mutex<Seen>>) {
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Stored { id, source, .. }) => {
                seen.lock().expect("lock").stored[i].entry(id).or_insert(source);
            }
            Ok(NodeEvent::SyncDone { peer, scope, .. }) => {
                let mut s = seen.lock().expect("lock");
                if s.healed {
                    s.sessions_after_heal[i].push((peer.to_string(), scope));
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(k)) => panic!("node {i} lost {k} events"),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Node `i`'s links: a few milliseconds each way, and the links to the other group cut while `cut`
/// says so. Addresses of no node of the test are refused.
fn shaper(i: usize, cut: &watch::Receiver<bool>) -> LinkShaper {
    let cut = cut.clone();
    LinkShaper::new(move |addr| {
        let j = link::node_of(addr).filter(|j| *j < NODES).ok_or(io::ErrorKind::ConnectionRefused)?;
        let across = group(i) != group(j);
        if across && *cut.borrow() {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        Ok(LinkProfile {
            latency: Duration::from_millis(if across { 15 } else { 3 }),
            cut: across.then(|| cut.clone()),
            ..LinkProfile::default()
        })
    })
}

fn has_all(seen: &Seen, i: usize, ids: &[RecordId]) -> bool {
    ids.iter().all(|id| seen.stored[i].contains_key(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_groups_converge_in_one_round_of_catch_up() {
    let start = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", start.elapsed().as_secs_f64());
    let (cut_tx, cut_rx) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Seen {
        stored: vec![HashMap::new(); NODES],
        sessions_after_heal: vec![Vec::new(); NODES],
        ..Seen::default()
    }));

    // Node i bootstraps to the two nodes before it in its group; the first node of the second group
    // and its middle one also to the first group, so that the whole network is one before the cut.
    let mut homes = Vec::new();
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for i in 0..NODES {
        let home = tempfile::tempdir().expect("tempdir");
        let mut cfg = NodeConfig::for_test(home.path().to_path_buf(), person(600 + i as u32));
        cfg.communities = vec![COMMUNITY.to_owned()];
        cfg.listen = vec![link::listen_addr(i)];
        cfg.link_shaper = Some(shaper(i, &cut_rx));
        // Catch-up only when a connection opens, never on a timer: the sessions after the heal are
        // exactly the round being tested.
        cfg.timing = Timing { sync_interval: Duration::from_secs(3600), ..Timing::fast() };
        // At the heal every node reconnects to the ten of the other group at once, and a session
        // refused as busy would not be retried (no timer): room for all of them.
        cfg.limits.max_sync_sessions = 2 * NODES;
        let mut boot: Vec<usize> = (i.saturating_sub(2)..i).filter(|j| group(*j) == group(i)).collect();
        if i == GROUP || i == GROUP + GROUP / 2 {
            boot.push(i - GROUP);
        }
        for j in boot {
            cfg.bootstrap.extend(nodes[j].dial_addrs().await.expect("dial addrs"));
        }
        let (handle, events) = Node::spawn(cfg).await.expect("node starts");
        tokio::spawn(listen(i, events, seen.clone()));
        nodes.push(handle);
        homes.push(home);
    }
    let index: HashMap<_, usize> = nodes.iter().enumerate().map(|(i, n)| (n.peer_id(), i)).collect();

    phase("20 nodes spawned");
    // One record reaches everybody before the cut: the network is whole.
    let author = &nodes[0];
    let first = sign_listing(author.identity(), listing(0, 1, COMMUNITY, "Ladder before the cut")).into_any();
    assert!(author.publish(&first).await.expect("publish").is_stored());
    let mut all_ids = vec![first.id()];
    wait_until(LIMIT, "the first record on every node", || {
        let done = (0..NODES).all(|i| has_all(&seen.lock().expect("lock"), i, &all_ids));
        async move { done }
    })
    .await;

    phase("the first record is everywhere");
    // The cut: every connection across breaks, and stays broken.
    cut_tx.send(true).expect("cut");
    wait_until(LIMIT, "no connection across the cut", || {
        let nodes = &nodes;
        let index = &index;
        async move {
            for (i, n) in nodes.iter().enumerate() {
                let peers = n.peers().await.expect("peers");
                if peers.iter().any(|p| index.get(&p.peer_id).is_some_and(|j| group(*j) != group(i))) {
                    return false;
                }
            }
            true
        }
    })
    .await;

    phase("cut");
    // Apart, both groups publish; each record reaches its own group only.
    let mut by_group: [Vec<RecordId>; 2] = [Vec::new(), Vec::new()];
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..PER_NODE {
            let key = (1 + k) as u8;
            let record =
                sign_listing(n.identity(), listing(key, 1, COMMUNITY, &format!("Tool {k} of node {i}"))).into_any();
            assert!(n.publish(&record).await.expect("publish").is_stored());
            by_group[group(i)].push(record.id());
        }
    }
    wait_until(LIMIT, "each group has its own records", || {
        let s = seen.lock().expect("lock");
        let done = (0..NODES).all(|i| has_all(&s, i, &by_group[group(i)]));
        async move { done }
    })
    .await;
    {
        let s = seen.lock().expect("lock");
        for i in 0..NODES {
            let other = &by_group[1 - group(i)];
            assert!(other.iter().all(|id| !s.stored[i].contains_key(id)), "node {i} got a record across the cut");
        }
    }
    all_ids.extend(by_group.iter().flatten());

    phase("the groups diverged");
    // Heal: links work again, and each node of the first group dials one of the second. Every new
    // connection starts one catch-up session per shared scope (no timer: see the configuration).
    let sessions_before: u64 = nodes.iter().map(|n| n.metrics().sync_sessions).sum();
    seen.lock().expect("lock").healed = true;
    cut_tx.send(false).expect("heal");
    for k in 0..GROUP {
        let addr = nodes[GROUP + k].dial_addrs().await.expect("dial addrs").remove(0);
        // The nodes may have reconnected on their own already (bootstrap retries, the DHT): then the
        // limit of connections per peer refuses this one, which is fine.
        let _ = nodes[k].dial(addr).await;
    }
    wait_until(LIMIT, "every node has every record", || {
        let s = seen.lock().expect("lock");
        let done = (0..NODES).all(|i| has_all(&s, i, &all_ids));
        async move { done }
    })
    .await;

    phase("healed and converged");
    // Converged within one round: no node ran a second session with the same peer for a scope.
    let s = seen.lock().expect("lock");
    let mut by_sync = 0;
    for i in 0..NODES {
        let sessions = &s.sessions_after_heal[i];
        let distinct: HashSet<&(String, String)> = sessions.iter().collect();
        assert_eq!(distinct.len(), sessions.len(), "node {i} ran more than one session with a peer: {sessions:?}");
        by_sync += by_group[1 - group(i)].iter().filter(|id| s.stored[i].get(id) == Some(&Source::Sync)).count();
    }
    let across = NODES * GROUP * PER_NODE;
    let counted = nodes.iter().map(|n| n.metrics().sync_sessions).sum::<u64>() - sessions_before;
    eprintln!(
        "partition and heal: {across} records to cross, {by_sync} by catch-up, {} by gossip; {} scope sessions \
         after the heal ({counted} reconciliations counted by the nodes)",
        across - by_sync,
        s.sessions_after_heal.iter().map(Vec::len).sum::<usize>()
    );
    assert!(by_sync > 0, "no record crossed by catch-up");
    drop(s);
    for n in &nodes {
        n.shutdown().await.expect("shutdown");
    }
}
