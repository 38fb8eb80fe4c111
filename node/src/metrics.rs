//! Counters for everything a node refuses, drops or does, readable at any time as a snapshot.
//!
//! Every rejection is counted under its stable code (the protocol's `RecordError::code`, or one of
//! the node's own codes below) and under the source it came from, so an operator (and the API) can
//! tell a flood from a bug. Counters are plain atomics behind a mutex-free map fixed at start, so
//! counting never blocks the swarm task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use troc_protocol::RecordError;

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Gossip,
    Sync,
    Local,
}

impl Source {
    const ALL: [Source; 3] = [Source::Gossip, Source::Sync, Source::Local];

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
    // The ingest queue was full: dropped, the catch-up will bring it again.
    "queue_full",
    // The store refused it: quotas.
    "quota",
    // A gossip message or sync response larger than allowed.
    "oversized",
    // A peer sent a sync message that does not decode or breaks the protocol.
    "bad_sync_message",
];

/// What the store did with records that passed verification.
pub const OUTCOMES: &[&str] = &["stored", "duplicate", "stale"];

#[derive(Debug)]
struct Inner {
    codes: Vec<&'static str>,
    /// [source][code]
    rejected: Vec<Vec<AtomicU64>>,
    /// [source][outcome]
    outcomes: Vec<Vec<AtomicU64>>,
    gossip_published: AtomicU64,
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
        let codes: Vec<&'static str> = RecordError::CODES.iter().chain(NODE_CODES).copied().collect();
        let per_source = |n: usize| Source::ALL.iter().map(|_| (0..n).map(|_| AtomicU64::new(0)).collect()).collect();
        Metrics {
            inner: Arc::new(Inner {
                rejected: per_source(codes.len()),
                outcomes: per_source(OUTCOMES.len()),
                codes,
                gossip_published: AtomicU64::new(0),
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

    pub fn published(&self) {
        self.inner.gossip_published.fetch_add(1, Ordering::Relaxed);
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
        MetricsSnapshot {
            rejected,
            outcomes,
            gossip_published: i.gossip_published.load(Ordering::Relaxed),
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
    pub gossip_published: u64,
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
        assert_eq!(m.rejected(Source::Gossip, "bad_signature"), 2);
        assert_eq!(m.rejected(Source::Sync, "queue_full"), 1);
        assert_eq!(m.rejected(Source::Sync, "malformed"), 1);
        let s = m.snapshot();
        assert_eq!(s.rejected_total("bad_signature"), 2);
        assert_eq!(s.outcomes[&Source::Local]["stored"], 1);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["rejected"]["gossip"]["bad_signature"], 2);
    }
}
