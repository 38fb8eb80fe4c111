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
