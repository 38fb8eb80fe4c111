//! Shared by the benchmarks that run many real nodes in one process (`propagation`, `scale`,
//! `flood`): a seeded random generator, quantiles, the process's CPU time, settings from the
//! environment, and the seeded identities and typical listing they publish.

use std::time::Duration;

use troc_protocol::{Category, Identity, Kind, Listing, ListingKey, Terms};

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `n`-th identity of a benchmark; `tag` (one byte per benchmark) keeps their keys apart.
pub fn identity(tag: u8, n: usize) -> Identity {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&(n as u64).to_be_bytes());
    Identity::from_seed(&seed)
}

/// A typical lend listing (about 570 bytes signed), unique per (author, n).
pub fn listing(author: usize, n: usize, community: &str) -> Listing {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(author as u64).to_be_bytes());
    key[8..].copy_from_slice(&(n as u64).to_be_bytes());
    Listing {
        key: ListingKey(key),
        revision: 1,
        kind: Kind::Lend,
        category: Category::Tools,
        title: format!("Cordless drill (18 V) with two batteries, number {n}"),
        description: "Bosch cordless drill with two 2 Ah batteries, a charger and a box of wood and metal bits. \
            Works fine for shelves, flat-pack furniture and the odd hole in concrete. Please bring it back \
            charged, and tell me if a bit breaks."
            .to_owned(),
        tags: vec!["diy".to_owned(), "drill".to_owned()],
        terms: Terms { max_loan_days: Some(7), ..Terms::default() },
        community: community.to_owned(),
        location: "u09tvw".to_owned(),
        available_from: None,
        available_until: None,
        valid_until: troc_node::now_secs() + 30 * 24 * 3600,
    }
}

/// A tiny xorshift64*: reproducible topologies and authors without another crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// User and system CPU time of this process so far (Linux; zero elsewhere).
#[allow(dead_code)] // not every benchmark that includes this file reports CPU time
pub fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return Duration::ZERO };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on every Linux platform.
    Duration::from_millis(ticks * 10)
}

/// The `p`-quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
