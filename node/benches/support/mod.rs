//! Shared by the ingest and memory benchmarks: a generator of fresh, real signed listings (about
//! 600 bytes each) by many authors, signed on every core, dated just before now so that a node's
//! clock checks accept them.

use troc_protocol::{Category, Currency, Identity, Kind, Listing, ListingKey, Money, Signed, SignedRecord, Terms};

/// About 400 characters with the number appended.
const DESCRIPTION: &str = "Bosch cordless drill with two 2 Ah batteries, a charger and a box of wood and metal bits. \
    Works fine for shelves, flat-pack furniture and the odd hole in concrete. Please bring it back charged, \
    and tell me if a bit breaks: no problem, I just want to know. I can show you how to use it, and lend \
    the spirit level and the stud finder too if you need them";

/// Communities the listings are spread over.
const COMMUNITIES: [&str; 4] = ["north-end", "riverside", "old-town", "harbour"];

/// Makes fresh listings: record `n` is by author `n % authors`, with listing key `n`, so no two
/// records share an address and each author gets every `authors`-th record.
pub struct Generator {
    authors: Vec<Identity>,
    next: u64,
    /// Dates of the records: `base + next / 20`, never after `now`.
    base: u64,
    now: u64,
}

impl Generator {
    pub fn new(authors: usize, seed_tag: u8) -> Self {
        let authors = (0..authors)
            .map(|a| {
                let mut seed = [seed_tag; 32];
                seed[..8].copy_from_slice(&(a as u64).to_le_bytes());
                Identity::from_seed(&seed)
            })
            .collect();
        let now = troc_node::now_secs();
        Generator { authors, next: 0, base: now - 2 * 24 * 3600, now }
    }

    /// The next `count` records, signed on every core.
    pub fn records(&mut self, count: usize) -> Vec<SignedRecord> {
        let start = self.next;
        self.next += count as u64;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = count.div_ceil(threads).max(1);
        let this = &*self;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let from = start + (t * per).min(count) as u64;
                        let to = start + ((t + 1) * per).min(count) as u64;
                        (from..to).map(|n| this.sign(n)).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }

    /// The next `count` records as bytes.
    pub fn bytes(&mut self, count: usize) -> Vec<Vec<u8>> {
        self.records(count).into_iter().map(|r| r.bytes().to_vec()).collect()
    }

    fn sign(&self, n: u64) -> SignedRecord {
        let created_at = (self.base + n / 20).min(self.now);
        let author = &self.authors[(n % self.authors.len() as u64) as usize];
        Signed::sign(author, created_at, listing(n, created_at)).unwrap().into_any()
    }
}

fn listing(n: u64, created_at: u64) -> Listing {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    Listing {
        key: ListingKey(key),
        revision: 1,
        kind: Kind::Lend,
        category: if n.is_multiple_of(2) { Category::Tools } else { Category::Garden },
        title: format!("Cordless drill (18 V) with two batteries, number {n}"),
        description: format!("{DESCRIPTION} (#{n})."),
        tags: vec!["drill".into(), "diy".into()],
        terms: Terms {
            max_loan_days: Some(7),
            deposit: Some(Money { amount_minor: 2000, currency: Currency(*b"EUR") }),
            conditions: String::new(),
            availability: String::new(),
            in_return: String::new(),
            hours: None,
        },
        community: COMMUNITIES[(n % COMMUNITIES.len() as u64) as usize].into(),
        location: "u09tvw".into(),
        available_from: None,
        available_until: None,
        valid_until: created_at + 30 * 24 * 3600,
    }
}
