//! Partition and heal at small scale (20 real nodes in-process): the nodes are split into two groups
//! of 10 whose links are cut (`troc_node::link`: connections across break and new ones are refused),
//! both groups publish while apart, then the links are healed and each node of one group dials one
//! node of the other. Every node must end with every record after at most one catch-up session per
//! peer and scope: convergence within one round of catch-up. The 100-node simulation with realistic
//! links and its figures is `node/benches/scale.rs` (`docs/reliability.md`, section 4).

use std::collections::HashMap;
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
/// For convergence after the heal: every node reconnects to the other group at once.
const HEAL_LIMIT: Duration = Duration::from_secs(150);

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
    /// Connections opened after the heal, by node and peer.
    connected_after_heal: Vec<HashMap<String, usize>>,
}

async fn listen(i: usize, mut rx: broadcast::Receiver<NodeEvent>, seen: Arc<Mutex<Seen>>) {
    loop {
        match rx.recv().await {
            Ok(NodeEvent::Stored { id, source, .. }) => {
                seen.lock().expect("lock").stored[i].entry(id).or_insert(source);
            }
            Ok(NodeEvent::PeerConnected { peer }) => {
                let mut s = seen.lock().expect("lock");
                if s.healed {
                    *s.connected_after_heal[i].entry(peer.to_string()).or_default() += 1;
                }
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

/// How long a probe may take to reach every node it should.
const PROBE_WINDOW: Duration = Duration::from_secs(3);

async fn publish_probe(node: &NodeHandle, probe: u8, when: &str) -> RecordId {
    let title = format!("Probe {probe} {when}");
    // Keys 100 and up: the records of the divergence use keys 1 and 2.
    let record = sign_listing(node.identity(), listing(100 + probe, 1, COMMUNITY, &title)).into_any();
    assert!(node.publish(&record).await.expect("publish").is_stored());
    record.id()
}

/// Whether every node of `who` stored `id` within `window`.
async fn reached(seen: &Mutex<Seen>, id: RecordId, who: &[usize], window: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        if who.iter().all(|i| seen.lock().expect("lock").stored[*i].contains_key(&id)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // A poll interval, not a synchronisation: the condition is re-checked until the deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
        connected_after_heal: vec![HashMap::new(); NODES],
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
    // Probes until three in a row reach every node by gossip within a few seconds: the meshes are
    // formed and the network is whole. (Catch-up runs only when a connection opens here, so a record
    // that gossip missed would not arrive later: gossip must be working before anything else.)
    let mut all_ids = Vec::new();
    let mut probe = 0u8;
    let mut in_a_row = 0;
    while in_a_row < 3 {
        assert!(probe < 40, "gossip did not settle before the cut");
        let author = &nodes[probe as usize % NODES];
        let id = publish_probe(author, probe, "before the cut").await;
        probe += 1;
        let everyone: Vec<usize> = (0..NODES).collect();
        in_a_row = if reached(&seen, id, &everyone, PROBE_WINDOW).await { in_a_row + 1 } else { 0 };
        // A probe that gossip did not bring everywhere is left out of the final check: with no
        // catch-up on a timer, nothing would bring it to the nodes it missed.
        if in_a_row > 0 {
            all_ids.push(id);
        }
    }
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
    // The meshes re-form within each group: probes until two in a row reach the whole group.
    for g in 0..2 {
        let members: Vec<usize> = (g * GROUP..(g + 1) * GROUP).collect();
        let mut in_a_row = 0;
        while in_a_row < 2 {
            assert!(probe < 120, "gossip did not settle within group {g} after the cut");
            let author = &nodes[members[probe as usize % GROUP]];
            let id = publish_probe(author, probe, "during the cut").await;
            probe += 1;
            in_a_row = if reached(&seen, id, &members, PROBE_WINDOW).await { in_a_row + 1 } else { 0 };
            // Probes that reached their whole group are records to cross at the heal like the others.
            if in_a_row > 0 {
                all_ids.push(id);
            }
        }
    }
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
    wait_until(HEAL_LIMIT, "every node has every record", || {
        let s = seen.lock().expect("lock");
        let done = (0..NODES).all(|i| has_all(&s, i, &all_ids));
        async move { done }
    })
    .await;

    phase("healed and converged");
    // Converged within one round: no node ran more than one session per scope with a peer for each
    // time it connected to that peer (sessions start only when a connection opens, see above).
    let by_name: HashMap<String, usize> = index.iter().map(|(p, i)| (p.to_string(), *i)).collect();
    let (by_sync, sessions) = {
        let s = seen.lock().expect("lock");
        let mut by_sync = 0;
        for i in 0..NODES {
            let mut per: HashMap<&(String, String), usize> = HashMap::new();
            for key in &s.sessions_after_heal[i] {
                *per.entry(key).or_default() += 1;
            }
            for ((peer, scope), n) in per {
                // The round under test is across the healed cut. A node also meets new peers of its
                // own group now and then (the DHT), and a session of such a connection made just
                // before the heal can end after it.
                if by_name.get(peer.as_str()).is_some_and(|j| group(*j) == group(i)) {
                    continue;
                }
                let connections = s.connected_after_heal[i].get(peer).copied().unwrap_or(0);
                assert!(
                    n <= connections,
                    "node {i}: {n} sessions for {scope} with {peer}, connected {connections} times"
                );
            }
            by_sync += by_group[1 - group(i)].iter().filter(|id| s.stored[i].get(id) == Some(&Source::Sync)).count();
        }
        (by_sync, s.sessions_after_heal.iter().map(Vec::len).sum::<usize>())
    };
    let across = NODES * GROUP * PER_NODE;
    let counted = nodes.iter().map(|n| n.metrics().sync_sessions).sum::<u64>() - sessions_before;
    eprintln!(
        "partition and heal: {across} records to cross, {by_sync} by catch-up, {} by gossip; {} scope sessions \
         after the heal ({counted} reconciliations counted by the nodes)",
        across - by_sync,
        sessions
    );
    assert!(by_sync > 0, "no record crossed by catch-up");
    for n in &nodes {
        n.shutdown().await.expect("shutdown");
    }
}
