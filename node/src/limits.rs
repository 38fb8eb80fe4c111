//! Rate limits: token buckets keyed by peer or by author, in a map of bounded size.
//!
//! A bucket holds at most `burst` tokens and refills at `per_sec`. The map is bounded: when it is
//! full, the bucket that was used least recently is dropped (a forgotten key starts again with a full
//! bucket, which only ever errs on the side of letting an honest peer through). Time is passed in,
//! so the limiter is deterministic under test.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The rate of one kind of traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    pub const fn new(per_sec: f64, burst: f64) -> Self {
        Rate { per_sec, burst }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets for many keys, with at most `capacity` keys remembered.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: Rate, capacity: usize) -> Self {
        RateLimiter { rate, capacity: capacity.max(1), buckets: HashMap::new() }
    }

    /// Takes `cost` tokens for `key` at time `now`; false if there are not enough (nothing is taken).
    pub fn check(&mut self, key: &K, cost: f64, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.evict_oldest();
        }
        let rate = self.rate;
        let b = self.buckets.entry(key.clone()).or_insert(Bucket { tokens: rate.burst, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_sec).min(rate.burst);
        b.last = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            true
        } else {
            false
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self.buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| k.clone()) {
            self.buckets.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    /// How long from `now` until `key` has `cost` tokens (zero if it has them now, or has no bucket
    /// yet); nothing is taken.
    pub fn ready_in(&self, key: &K, cost: f64, now: Instant) -> Duration {
        let Some(b) = self.buckets.get(key) else { return Duration::ZERO };
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        let tokens = (b.tokens + elapsed * self.rate.per_sec).min(self.rate.burst);
        if tokens >= cost || self.rate.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((cost - tokens) / self.rate.per_sec)
    }

    /// Empties `key`'s bucket at `now`: its tokens come back at the rate from then on.
    pub fn empty(&mut self, key: &K, now: Instant) {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.evict_oldest();
        }
        self.buckets.insert(key.clone(), Bucket { tokens: 0.0, last: now });
    }
}

/// Authors this node met only recently, and the gossip budget they share.
///
/// A per-author rate bounds what one author spreads, but keys are free: a flooder with fresh keys
/// gets a full burst for each, and every record in those bursts is valid, so every node verifies,
/// stores and forwards it. What separates a neighbour from a fresh key is time: an author whose
/// records this node has held for `settle` (or held before it started) is *settled* and keeps its
/// own rate only; the gossip of every other author also takes a token from one bucket that all of
/// them share. A neighbour who has just joined gets their first few records through at once and the
/// rest by catch-up; a flood of fresh keys gets no more than that bucket through any node.
///
/// `since` remembers when each unsettled author was first met (at most `capacity` of them; settled
/// ones are dropped). An author first met while it is full is not admitted: once stored, an author
/// that is not remembered would count as settled.
#[derive(Debug)]
pub struct NewAuthors<K> {
    settle: Duration,
    capacity: usize,
    since: HashMap<K, Instant>,
    shared: RateLimiter<()>,
}

impl<K: Hash + Eq + Clone> NewAuthors<K> {
    /// `settle` zero turns the check off: every author counts as settled.
    pub fn new(rate: Rate, settle: Duration, capacity: usize) -> Self {
        NewAuthors { settle, capacity: capacity.max(1), since: HashMap::new(), shared: RateLimiter::new(rate, 1) }
    }

    /// Whether gossip by `key` may go on at `now`: always for a settled author, otherwise if the
    /// shared bucket has a token (which it takes). `stored` says whether the store holds records
    /// by `key`.
    pub fn admit(&mut self, key: &K, stored: bool, now: Instant) -> bool {
        if self.settle.is_zero() {
            return true;
        }
        match self.since.get(key) {
            Some(first) if now.saturating_duration_since(*first) >= self.settle => {
                self.since.remove(key);
                true
            }
            Some(_) => self.shared.check(&(), 1.0, now),
            None if stored => true,
            None => {
                self.make_room(now) && self.shared.check(&(), 1.0, now) && self.since.insert(key.clone(), now).is_none()
            }
        }
    }

    /// Whether `key` is new here (not settled) at `now`; nothing is taken or remembered.
    pub fn is_new(&self, key: &K, stored: bool, now: Instant) -> bool {
        if self.settle.is_zero() {
            return false;
        }
        match self.since.get(key) {
            Some(first) => now.saturating_duration_since(*first) < self.settle,
            None => !stored,
        }
    }

    /// Starts the clock for `key` without taking a token (a verified record that came by
    /// catch-up): its gossip shares the bucket until it settles. While the table is full of
    /// unsettled authors, such an author is not remembered and counts as settled once stored
    /// (catch-up has bounds of its own: sessions, request sizes, quotas).
    pub fn meet(&mut self, key: &K, stored: bool, now: Instant) {
        if !self.settle.is_zero() && !stored && !self.since.contains_key(key) && self.make_room(now) {
            self.since.insert(key.clone(), now);
        }
    }

    /// Authors remembered as unsettled.
    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    /// Whether one more author fits, after dropping those that have settled.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.since.len() >= self.capacity {
            let settle = self.settle;
            self.since.retain(|_, first| now.saturating_duration_since(*first) < settle);
        }
        self.since.len() < self.capacity
    }
}

/// Strikes against a peer: invalid records and rate-limit violations. A peer that collects
/// `threshold` strikes within the decay is disconnected (and gossipsub's own score does the rest).
#[derive(Debug)]
pub struct Strikes<K> {
    limiter: RateLimiter<K>,
}

impl<K: Hash + Eq + Clone> Strikes<K> {
    /// `threshold` strikes allowed in a burst, forgiven at `per_sec`.
    pub fn new(threshold: f64, per_sec: f64, capacity: usize) -> Self {
        Strikes { limiter: RateLimiter::new(Rate::new(per_sec, threshold), capacity) }
    }

    /// Records a strike; true when the peer is over the threshold and should be disconnected.
    pub fn strike(&mut self, key: &K, now: Instant) -> bool {
        !self.limiter.check(key, 1.0, now)
    }

    pub fn forget(&mut self, key: &K) {
        self.limiter.forget(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_bucket_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Rate::new(10.0, 5.0), 100);
        l.empty(&"a", t0);
        assert!(!l.check(&"a", 1.0, t0));
        assert!(l.check(&"a", 1.0, t0 + Duration::from_millis(100)));
        assert!(!l.check(&"a", 1.0, t0 + Duration::from_millis(100)));
        assert!(l.check(&"b", 1.0, t0), "other keys start full");
    }

    #[test]
    fn ready_in_says_when_the_next_token_is_there() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Rate::new(4.0, 2.0), 100);
        assert_eq!(l.ready_in(&"a", 1.0, t0), Duration::ZERO, "no bucket yet: a full one");
        l.empty(&"a", t0);
        let wait = l.ready_in(&"a", 1.0, t0);
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
        assert!(!l.check(&"a", 1.0, t0 + wait - Duration::from_millis(1)));
        assert!(l.check(&"a", 1.0, t0 + wait + Duration::from_micros(1)));
        assert_eq!(l.ready_in(&"a", 1.0, t0 + Duration::from_secs(10)), Duration::ZERO);
    }

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Rate::new(10.0, 5.0), 100);
        for _ in 0..5 {
            assert!(l.check(&1u32, 1.0, t0));
        }
        assert!(!l.check(&1u32, 1.0, t0));
        // Another key is independent.
        assert!(l.check(&2u32, 1.0, t0));
        // 100 ms later: one token back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check(&1u32, 1.0, t1));
        assert!(!l.check(&1u32, 1.0, t1));
        // Never more than the burst.
        let t2 = t0 + Duration::from_secs(100);
        for _ in 0..5 {
            assert!(l.check(&1u32, 1.0, t2));
        }
        assert!(!l.check(&1u32, 1.0, t2));
    }

    #[test]
    fn bounded_keys() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Rate::new(1.0, 1.0), 3);
        for k in 0..10u32 {
            l.check(&k, 1.0, t0 + Duration::from_millis(k as u64));
        }
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn new_authors_share_one_bucket_until_they_settle() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(60);
        let mut n = NewAuthors::new(Rate::new(1.0, 3.0), settle, 100);
        // Settled: stored before and never met as new. Not counted.
        for _ in 0..10 {
            assert!(n.admit(&"old", true, t0));
        }
        // Three fresh authors share the burst of 3.
        assert!(n.admit(&"a", false, t0));
        assert!(n.admit(&"b", false, t0));
        assert!(n.admit(&"a", true, t0), "a is remembered as new even once stored");
        assert!(!n.admit(&"c", false, t0));
        assert!(!n.admit(&"a", true, t0));
        assert_eq!(n.len(), 2, "c was not admitted, so not remembered");
        // The shared bucket refills at its rate.
        assert!(n.admit(&"c", false, t0 + Duration::from_secs(1)));
        assert!(!n.admit(&"b", true, t0 + Duration::from_secs(1)));
        // Settled after `settle`: no longer counted, and forgotten.
        for _ in 0..10 {
            assert!(n.admit(&"a", true, t0 + settle));
        }
        // c, met a second later, still shares the (refilled) bucket.
        for _ in 0..3 {
            assert!(n.admit(&"c", true, t0 + settle));
        }
        assert!(!n.admit(&"c", true, t0 + settle));
        assert!(n.admit(&"c", true, t0 + settle + Duration::from_secs(1)));
        assert!(n.admit(&"c", true, t0 + settle + Duration::from_secs(1)), "settled: not counted");
        assert_eq!(n.len(), 1, "b is still remembered");
    }

    #[test]
    fn new_authors_met_by_catch_up_are_counted_and_a_full_table_admits_nobody_new() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(60);
        let mut n = NewAuthors::new(Rate::new(0.0, 100.0), settle, 2);
        n.meet(&"synced", false, t0);
        assert!(n.admit(&"synced", true, t0));
        assert_eq!(n.len(), 1, "met by catch-up: new until it settles");
        n.meet(&"known", true, t0);
        assert_eq!(n.len(), 1, "stored already: settled");
        assert!(n.is_new(&"synced", true, t0) && n.is_new(&"never", false, t0));
        assert!(!n.is_new(&"known", true, t0) && !n.is_new(&"synced", true, t0 + settle));
        assert!(n.admit(&"x", false, t0));
        assert!(!n.admit(&"y", false, t0), "full: y could not be remembered");
        assert!(n.admit(&"y", false, t0 + settle), "room again once the others settle");
        // Off: everyone counts as settled.
        let mut off = NewAuthors::new(Rate::new(0.0, 0.0), Duration::ZERO, 1);
        assert!(!off.is_new(&"z", false, t0));
        assert!(off.admit(&"z", false, t0));
        assert!(off.is_empty());
    }

    #[test]
    fn strikes_disconnect_persistent_offenders_only() {
        let t0 = Instant::now();
        let mut s = Strikes::new(3.0, 0.1, 10);
        assert!(!s.strike(&"p", t0));
        assert!(!s.strike(&"p", t0));
        assert!(!s.strike(&"p", t0));
        assert!(s.strike(&"p", t0));
        // Forgiven over time.
        let later = t0 + Duration::from_secs(60);
        assert!(!s.strike(&"p", later));
    }
}
