//! Helpers for multi-node tests: nodes in-process on loopback, record fixtures, and waiting on a
//! condition with a deadline (never a sleep as synchronisation).

use std::future::Future;
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::broadcast;
use troc_node::config::NodeConfig;
use troc_node::events::NodeEvent;
use troc_node::node::{Node, NodeHandle};
use troc_protocol::{Category, Identity, Kind, Listing, ListingKey, Signed, Terms, Withdrawal};

/// A node under test, with its home kept alive for as long as it is.
pub struct TestNode {
    pub handle: NodeHandle,
    pub events: broadcast::Receiver<NodeEvent>,
    pub home: TempDir,
    pub identity: Identity,
}

/// The seed of the n-th test person.
pub fn person(n: u32) -> Identity {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    seed[31] = 0x77;
    Identity::from_seed(&seed)
}

pub fn config(home: &TempDir, identity: &Identity, communities: &[&str]) -> NodeConfig {
    let mut cfg = NodeConfig::for_test(home.path().to_path_buf(), identity.clone());
    cfg.communities = communities.iter().map(|c| c.to_string()).collect();
    cfg
}

/// Spawns a node for person `n` following `communities`, with `bootstrap` peers.
pub async fn spawn(n: u32, communities: &[&str], bootstrap: &[&TestNode]) -> TestNode {
    let home = tempfile::tempdir().expect("tempdir");
    spawn_in(home, person(n), communities, bootstrap).await
}

pub async fn spawn_in(home: TempDir, identity: Identity, communities: &[&str], bootstrap: &[&TestNode]) -> TestNode {
    spawn_with(home, identity, communities, bootstrap, |_| {}).await
}

/// Spawns a node after `adjust` changed its configuration.
pub async fn spawn_with(
    home: TempDir,
    identity: Identity,
    communities: &[&str],
    bootstrap: &[&TestNode],
    adjust: impl FnOnce(&mut NodeConfig),
) -> TestNode {
    let mut cfg = config(&home, &identity, communities);
    adjust(&mut cfg);
    for b in bootstrap {
        cfg.bootstrap.extend(b.handle.dial_addrs().await.expect("dial addrs"));
    }
    let (handle, events) = Node::spawn(cfg).await.expect("node starts");
    TestNode { handle, events, home, identity }
}

/// Waits until `check` returns true, polling it after every event of `node` and at least every
/// 50 ms, for at most `limit`. Panics with `what` on timeout.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        // A poll interval, not a synchronisation: the condition is re-checked until the deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the next event matching `pred` on `rx`, for at most `limit`.
pub async fn next_event<F>(
    rx: &mut broadcast::Receiver<NodeEvent>,
    limit: Duration,
    what: &str,
    mut pred: F,
) -> NodeEvent
where
    F: FnMut(&NodeEvent) -> bool,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event channel closed waiting for: {what}"),
            Err(_) => panic!("timed out after {limit:?} waiting for: {what}"),
        }
    }
}

pub fn now() -> u64 {
    troc_node::now_secs()
}

/// A valid lend listing of `identity` in `community`.
pub fn listing(key: u8, revision: u32, community: &str, title: &str) -> Listing {
    Listing {
        key: ListingKey([key; 16]),
        revision,
        kind: Kind::Lend,
        category: Category::Tools,
        title: title.to_owned(),
        description: "A sturdy tool, lent for a weekend.".to_owned(),
        tags: vec!["diy".to_owned()],
        terms: Terms { max_loan_days: Some(3), ..Terms::default() },
        community: community.to_owned(),
        location: "u09tv".to_owned(),
        available_from: None,
        available_until: None,
        valid_until: now() + 30 * 24 * 3600,
    }
}

pub fn sign_listing(identity: &Identity, listing: Listing) -> Signed<Listing> {
    Signed::sign(identity, now(), listing).expect("valid listing")
}

pub fn withdrawal(identity: &Identity, key: u8) -> Signed<Withdrawal> {
    Signed::sign(
        identity,
        now(),
        Withdrawal { listing_author: *identity.public(), listing_key: ListingKey([key; 16]), reason: String::new() },
    )
    .expect("valid withdrawal")
}

/// Blocking twin of [`wait_until`] for tests that drive real processes from a plain thread: polls
/// `check` every `interval` until it gives a value, for at most `limit`; panics with `what` on
/// timeout. The interval is a poll period inside a bounded wait, not a synchronisation.
pub fn poll_blocking<T>(limit: Duration, interval: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(interval);
    }
}
