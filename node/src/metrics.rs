//! Counters for everything a node refuses, drops or does, readable at any time as a snapshot.
//!
//! Every rejection is counted under its stable code (the protocol's `RecordError::code`, or one of
//! the node's own codes below) and under the source it came from, so an operator (and the API) can
//! tell a flood from a bug. Counters are plain atomics behind a mutex-free map fixed at start, so
//! counting never blocks the swarm task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use troc_protocol::RecordError;

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Gossip,
    Sync,
    Local,
    /// A direct deal message from the other party (`/troc/deal/1`).
    Deal,
}

impl Source {
    const ALL: [Source; 4] = [Source::Gossip, Source::Sync, Source::Local, Source::Deal];

    fn index(self) -> usize {
        self as usize
    }
}

/// The node's own rejection codes, beside the protocol's.
pub const NODE_CODES: &[&str] = &[
    // A gossip message on a topic the record does not belong to (a listing of community A on B's topic).
    "wrong_topic",
    // A private record type (a proposal) sent on gossip or catch-up.
    "not_public",
    // Gossip published by someone who is neither the author nor the co-signer.
    "wrong_publisher",
    // The peer or author exceeded its rate.
    "peer_rate_limited",
    "author_rate_limited",
    // An author new to this node, while new authors are over their shared rate (ignored).
    "new_author_rate_limited",
    // The author's own node sent more of its records than the per-author rate (penalised).
    "own_rate_exceeded",
    // The ingest queue was full: dropped, the catch-up will bring it again.
    "queue_full",
    // The store refused it: quotas.
    "quota",
    // A gossip message or sync response larger than allowed.
    "oversized",
    // A peer sent a sync message that does not decode or breaks the protocol.
    "bad_sync_message",
    // (The deal rules' codes, docs/protocol.md section 14, are `store::DealRefusal::CODES`.)
    // A direct deal message: from a blocked person, not for us, or over the peer's rate.
    "blocked",
    "not_for_us",
    "deal_rate_limited",
    "bad_deal_message",
    // A partially signed agreement that matches no live proposal of ours.
    "no_matching_proposal",
    // A local revocation refused (docs/protocol.md section 14, revocations): a record that cannot
    // be revoked (a withdrawal, a revocation, a closed proposal), or a deal step the other party
    // already built on.
    "not_revocable",
    "already_built_on",
];

/// What the store did with records that passed verification.
/// `unknown_deal` and `deal_not_ended` are deal records kept back (not stored, no penalty) until the
/// agreement, or the record that ends the deal, is here.
pub const OUTCOMES: &[&str] = &["stored", "duplicate", "stale", "unknown_deal", "deal_not_ended"];

#[derive(Debug)]
struct Inner {
    codes: Vec<&'static str>,
    /// [source][code]
    rejected: Vec<Vec<AtomicU64>>,
    /// [source][outcome]
    outcomes: Vec<Vec<AtomicU64>>,
    /// Requests the local API refused, by the API's error code (`docs/api.md`). The codes are
    /// `&'static str`s of the API's source, so the map is bounded; a mutex rather than a fixed table
    /// because the API's codes live in the `api` module, and only API tasks take it (never the
    /// swarm task).
    api_refused: Mutex<BTreeMap<&'static str, u64>>,
    gossip_published: AtomicU64,
    gossip_received: AtomicU64,
    gossip_delivered: AtomicU64,
    /// Set by the swarm task while it calls gossipsub's `publish`, which computes the message id of
    /// our own message: that call is not a received copy.
    publishing: AtomicBool,
    sync_sessions: AtomicU64,
    sync_fetched: AtomicU64,
    sync_pushed: AtomicU64,
    sync_bytes_sent: AtomicU64,
    sync_bytes_received: AtomicU64,
    peers_disconnected_for_abuse: AtomicU64,
}

/// Shared counters. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let codes: Vec<&'static str> =
            RecordError::CODES.iter().chain(NODE_CODES).chain(crate::store::DealRefusal::CODES).copied().collect();
        let per_source = |n: usize| Source::ALL.iter().map(|_| (0..n).map(|_| AtomicU64::new(0)).collect()).collect();
        Metrics {
            inner: Arc::new(Inner {
                rejected: per_source(codes.len()),
                outcomes: per_source(OUTCOMES.len()),
                api_refused: Mutex::new(BTreeMap::new()),
                codes,
                gossip_published: AtomicU64::new(0),
                gossip_received: AtomicU64::new(0),
                gossip_delivered: AtomicU64::new(0),
                publishing: AtomicBool::new(false),
                sync_sessions: AtomicU64::new(0),
                sync_fetched: AtomicU64::new(0),
                sync_pushed: AtomicU64::new(0),
                sync_bytes_sent: AtomicU64::new(0),
                sync_bytes_received: AtomicU64::new(0),
                peers_disconnected_for_abuse: AtomicU64::new(0),
            }),
        }
    }

    /// Counts a rejection. Unknown codes are counted as `malformed` rather than lost.
    pub fn reject(&self, source: Source, code: &str) {
        let i = self.inner.codes.iter().position(|c| *c == code).unwrap_or(0);
        self.inner.rejected[source.index()][i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn outcome(&self, source: Source, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|c| *c == outcome) {
            self.inner.outcomes[source.index()][i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request the local API refused, under the API's error code.
    pub fn api_refused(&self, code: &'static str) {
        let mut m = self.inner.api_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(code).or_insert(0) += 1;
    }

    pub fn published(&self) {
        self.inner.gossip_published.fetch_add(1, Ordering::Relaxed);
    }

    /// Called from gossipsub's message id function. Gossipsub 0.50 computes a message id for every
    /// message that arrives (first copies and duplicates alike, before its duplicate check, including
    /// copies requested with IWANT; not messages whose gossipsub signature fails, which its codec
    /// drops first), and once for each message we publish ourselves: calls made inside
    /// [`Metrics::publishing`] are those, and are not counted.
    pub fn gossip_message_seen(&self) {
        if !self.inner.publishing.load(Ordering::Relaxed) {
            self.inner.gossip_received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `f` (a call to gossipsub's `publish`) with the message id function told that the message
    /// is ours. `publish` is synchronous and the swarm task is the only caller of the behaviour, so
    /// nothing else computes a message id meanwhile.
    pub fn publishing<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inner.publishing.store(true, Ordering::Relaxed);
        let r = f();
        self.inner.publishing.store(false, Ordering::Relaxed);
        r
    }

    /// A gossip message passed gossipsub's duplicate check and was handed to the node.
    pub fn gossip_delivered(&self) {
        self.inner.gossip_delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sync_session(&self, fetched: u64, pushed: u64, sent: u64, received: u64) {
        let i = &self.inner;
        i.sync_sessions.fetch_add(1, Ordering::Relaxed);
        i.sync_fetched.fetch_add(fetched, Ordering::Relaxed);
        i.sync_pushed.fetch_add(pushed, Ordering::Relaxed);
        i.sync_bytes_sent.fetch_add(sent, Ordering::Relaxed);
        i.sync_bytes_received.fetch_add(received, Ordering::Relaxed);
    }

    pub fn disconnected_for_abuse(&self) {
        self.inner.peers_disconnected_for_abuse.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of rejections with `code` from `source`.
    pub fn rejected(&self, source: Source, code: &str) -> u64 {
        match self.inner.codes.iter().position(|c| *c == code) {
            Some(i) => self.inner.rejected[source.index()][i].load(Ordering::Relaxed),
            None => 0,
        }
    }

    /// A consistent-enough copy of every counter (each read is atomic; the set is not).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let i = &self.inner;
        let mut rejected = BTreeMap::new();
        let mut outcomes = BTreeMap::new();
        for s in Source::ALL {
            let mut r = BTreeMap::new();
            for (c, v) in i.codes.iter().zip(&i.rejected[s.index()]) {
                let v = v.load(Ordering::Relaxed);
                if v > 0 {
                    r.insert(*c, v);
                }
            }
            rejected.insert(s, r);
            let mut o = BTreeMap::new();
            for (c, v) in OUTCOMES.iter().zip(&i.outcomes[s.index()]) {
                o.insert(*c, v.load(Ordering::Relaxed));
            }
            outcomes.insert(s, o);
        }
        let api_refused = i.api_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        MetricsSnapshot {
            rejected,
            outcomes,
            api_refused,
            gossip_published: i.gossip_published.load(Ordering::Relaxed),
            gossip_received: i.gossip_received.load(Ordering::Relaxed),
            gossip_delivered: i.gossip_delivered.load(Ordering::Relaxed),
            sync_sessions: i.sync_sessions.load(Ordering::Relaxed),
            sync_fetched: i.sync_fetched.load(Ordering::Relaxed),
            sync_pushed: i.sync_pushed.load(Ordering::Relaxed),
            sync_bytes_sent: i.sync_bytes_sent.load(Ordering::Relaxed),
            sync_bytes_received: i.sync_bytes_received.load(Ordering::Relaxed),
            peers_disconnected_for_abuse: i.peers_disconnected_for_abuse.load(Ordering::Relaxed),
        }
    }
}

/// A copy of the counters, for the API and for tests.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    /// Rejections by source, then code (codes with a zero count are left out).
    pub rejected: BTreeMap<Source, BTreeMap<&'static str, u64>>,
    /// Verified records by source, then what the store did with them.
    pub outcomes: BTreeMap<Source, BTreeMap<&'static str, u64>>,
    /// Requests the local API refused, by the API's error code (codes never seen are left out).
    pub api_refused: BTreeMap<&'static str, u64>,
    pub gossip_published: u64,
    /// Gossip messages received: every copy, first or duplicate, valid or not (messages in RPCs from
    /// graylisted peers, which gossipsub drops unread, are not seen and not counted).
    pub gossip_received: u64,
    /// Gossip messages that passed gossipsub's duplicate check and went to validation: the first copy
    /// of each. `gossip_received - gossip_delivered` is the number of duplicate copies received.
    pub gossip_delivered: u64,
    pub sync_sessions: u64,
    pub sync_fetched: u64,
    pub sync_pushed: u64,
    pub sync_bytes_sent: u64,
    pub sync_bytes_received: u64,
    pub peers_disconnected_for_abuse: u64,
}

impl MetricsSnapshot {
    /// Total rejections with `code` across sources.
    pub fn rejected_total(&self, code: &str) -> u64 {
        self.rejected.values().filter_map(|m| m.get(code)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_source_and_code() {
        let m = Metrics::new();
        m.reject(Source::Gossip, "bad_signature");
        m.reject(Source::Gossip, "bad_signature");
        m.reject(Source::Sync, "queue_full");
        m.reject(Source::Sync, "no_such_code");
        m.outcome(Source::Local, "stored");
        m.api_refused("unauthorized");
        assert_eq!(m.rejected(Source::Gossip, "bad_signature"), 2);
        assert_eq!(m.rejected(Source::Sync, "queue_full"), 1);
        assert_eq!(m.rejected(Source::Sync, "malformed"), 1);
        let s = m.snapshot();
        assert_eq!(s.rejected_total("bad_signature"), 2);
        assert_eq!(s.outcomes[&Source::Local]["stored"], 1);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["gossip_received"], 0);
        assert_eq!(json["rejected"]["gossip"]["bad_signature"], 2);
        assert_eq!(json["api_refused"]["unauthorized"], 1);
    }

    #[test]
    fn message_ids_computed_while_publishing_are_not_received_copies() {
        let m = Metrics::new();
        m.gossip_message_seen();
        m.publishing(|| m.gossip_message_seen());
        m.gossip_message_seen();
        m.gossip_delivered();
        let s = m.snapshot();
        assert_eq!(s.gossip_received, 2);
        assert_eq!(s.gossip_delivered, 1);
    }
}
