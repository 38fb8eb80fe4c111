//! Search benchmark: the listing search index (`troc_node::search`) over 100,000 real signed
//! listings with synthetic but realistic content, against the targets (a query combining
//! text, kind and distance: p50 under 10 ms, p99 under 50 ms).
//!
//! The generator is seeded: titles of 2 to 6 words and descriptions of 20 to 60 words drawn from a
//! vocabulary of 2,000 words with Zipf frequencies (tool and household nouns and adjectives first,
//! then made-up words), 0 to 5 tags out of 120, every kind and category, 30 communities,
//! 6-character geohash cells spread over a metropolitan area about 50 km across (Paris) and five
//! other cities, 8% without a location. It prints, per query mix, percentiles measured over 2,000
//! varied queries run one by one, then the build time, the incremental costs, the cost of testing one
//! listing against a saved search, and the memory per listing; then criterion times each mix.
//!
//! Run: `cargo bench -p troc-node --bench search`. Under `cargo test --benches` (no `--bench`
//! argument) it uses 10,000 listings and 200 queries per mix so that the check stays quick.

// A benchmark: a failure should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use troc_node::search::{Query, SearchIndex, Sort};
use troc_protocol::{Category, Identity, Kind, Listing, ListingKey, Signed, Terms, geohash};

/// The troc binary's allocator and settings (`troc_node::alloc`), so the figures are the binary's.
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

/// "Now" for the whole benchmark: today at 00:00 UTC. Real time, not a fixed date, because the API
/// part feeds the listings to a node, which checks them against its clock.
static NOW: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| troc_node::now_secs() / DAY * DAY);
const DAY: u64 = 86_400;
const AUTHORS: usize = 2_000;
const VOCABULARY: usize = 2_000;
const TAG_COUNT: usize = 120;
const COMMUNITY_COUNT: usize = 30;

/// The head of the vocabulary: the most frequent words, in rank order.
const REAL_WORDS: &[&str] = &[
    "drill",
    "bike",
    "good",
    "condition",
    "table",
    "ladder",
    "chair",
    "small",
    "large",
    "tent",
    "book",
    "saw",
    "electric",
    "garden",
    "kids",
    "old",
    "new",
    "lamp",
    "box",
    "set",
    "wooden",
    "hammer",
    "mower",
    "sofa",
    "toys",
    "bag",
    "kitchen",
    "blender",
    "guitar",
    "camera",
    "perceuse",
    "vélo",
    "table",
    "jeux",
    "livres",
    "cordless",
    "battery",
    "charger",
    "bits",
    "wheel",
    "pump",
    "hose",
    "shelf",
    "desk",
    "mirror",
    "rug",
    "pan",
    "pot",
    "oven",
    "toaster",
    "kettle",
    "iron",
    "vacuum",
    "cleaner",
    "sewing",
    "machine",
    "printer",
    "screen",
    "speaker",
    "headphones",
    "keyboard",
    "piano",
    "violin",
    "drum",
    "ski",
    "snowboard",
    "skates",
    "helmet",
    "stroller",
    "crib",
    "bed",
    "mattress",
    "pillow",
    "blanket",
    "jacket",
    "coat",
    "boots",
    "shoes",
    "dress",
    "shirt",
    "trousers",
    "scarf",
    "backpack",
    "suitcase",
    "trailer",
    "car",
    "scooter",
    "canoe",
    "kayak",
    "paddle",
    "fishing",
    "rod",
    "barbecue",
    "grill",
    "parasol",
    "bench",
    "planter",
    "seeds",
    "compost",
    "rake",
    "shovel",
    "wheelbarrow",
    "trimmer",
    "chainsaw",
    "sander",
    "jigsaw",
    "router",
    "clamp",
    "wrench",
    "screwdriver",
    "pliers",
    "level",
    "tape",
    "measure",
    "paint",
    "brush",
    "roller",
    "scaffold",
    "tiles",
    "cement",
    "mixer",
    "projector",
    "console",
    "games",
    "puzzle",
    "lego",
    "doll",
    "train",
    "cards",
    "board",
    "chess",
    "novel",
    "comics",
    "cookbook",
    "dictionary",
    "atlas",
    "lessons",
    "repair",
    "help",
    "moving",
    "babysitting",
    "tutoring",
    "english",
    "french",
    "maths",
    "plumbing",
    "electrician",
    "gardening",
    "cleaning",
    "cooking",
    "baking",
    "rouge",
    "bleu",
    "vert",
    "noir",
    "blanc",
    "grand",
    "petit",
    "électrique",
    "cuisine",
    "jardin",
    "outil",
    "échelle",
    "tondeuse",
    "poussette",
    "lit",
    "chaise",
    "lampe",
    "réfrigérateur",
    "télé",
    "pièces",
    "vis",
    "red",
    "blue",
    "green",
    "black",
    "white",
    "heavy",
    "light",
    "portable",
    "vintage",
    "modern",
    "folding",
    "adjustable",
    "waterproof",
    "stainless",
    "steel",
    "plastic",
    "glass",
    "leather",
    "cotton",
    "wool",
];

/// Metropolitan centre (Paris) and the other cities.
const METRO: (f64, f64) = (48.8566, 2.3522);
const CITIES: &[(f64, f64)] =
    &[(45.764, 4.8357), (43.2965, 5.3698), (50.6292, 3.0573), (44.8378, -0.5792), (47.2184, -1.5536)];

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// Draws ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let cdf = (0..n)
            .map(|r| {
                acc += 1.0 / ((r + 1) as f64).powf(s);
                acc
            })
            .collect::<Vec<_>>();
        let total = acc;
        Zipf(cdf.into_iter().map(|c| c / total).collect())
    }
    fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

struct Corpus {
    words: Vec<String>,
    zipf: Zipf,
    tags: Vec<String>,
    tag_zipf: Zipf,
    communities: Vec<String>,
    community_zipf: Zipf,
}

impl Corpus {
    fn new(rng: &mut Rng) -> Self {
        const SYLLABLES: &[&str] = &[
            "ba", "ko", "ri", "ten", "lo", "mar", "vi", "sel", "dra", "pon", "fu", "ka", "ter", "bel", "nor", "chi",
            "gal", "mi", "tro", "sa", "ve", "lin", "dor", "pe", "qua", "zel", "ru", "ton", "fa", "gre",
        ];
        let mut words: Vec<String> = Vec::with_capacity(VOCABULARY);
        for w in REAL_WORDS {
            if !words.iter().any(|x| x == w) {
                words.push((*w).to_owned());
            }
        }
        while words.len() < VOCABULARY {
            let n = rng.range(2, 4);
            let w: String = (0..n).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect();
            if !words.contains(&w) {
                words.push(w);
            }
        }
        let tags =
            (0..TAG_COUNT)
                .map(|i| {
                    if i < 40 {
                        words[i].replace(['é', 'è'], "e")
                    } else {
                        format!("{}-{}", words[i], words[i + 300])
                    }
                })
                .map(|t| t.chars().filter(|c| c.is_ascii_lowercase() || *c == '-').collect::<String>())
                .collect();
        let communities = (0..COMMUNITY_COUNT).map(|i| format!("quartier-{i}")).collect();
        Corpus {
            words,
            zipf: Zipf::new(VOCABULARY, 1.0),
            tags,
            tag_zipf: Zipf::new(TAG_COUNT, 1.0),
            communities,
            community_zipf: Zipf::new(COMMUNITY_COUNT, 0.8),
        }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        &self.words[self.zipf.draw(rng)]
    }

    fn sentence(&self, rng: &mut Rng, n: usize) -> String {
        (0..n).map(|_| self.word(rng)).collect::<Vec<_>>().join(" ")
    }
}

/// A point in the metropolitan area: denser in the centre, about 50 km across.
fn metro_point(rng: &mut Rng) -> (f64, f64) {
    let tri = |rng: &mut Rng| (rng.unit() + rng.unit() + rng.unit()) / 3.0 * 2.0 - 1.0;
    (METRO.0 + tri(rng) * 0.225, METRO.1 + tri(rng) * 0.34)
}

fn listing(corpus: &Corpus, rng: &mut Rng, n: usize) -> (usize, u64, Listing) {
    let kind = match rng.below(100) {
        0..35 => Kind::Lend,
        35..55 => Kind::Give,
        55..70 => Kind::Want,
        70..80 => Kind::Share,
        80..90 => Kind::Swap,
        _ => Kind::Barter,
    };
    let category = Category::ALL[rng.below(Category::ALL.len())];
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..rng.range(0, 5) {
        let t = corpus.tags[corpus.tag_zipf.draw(rng)].clone();
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    let location = match rng.below(100) {
        0..80 => {
            let (lat, lon) = metro_point(rng);
            geohash::encode(lat, lon, 6)
        }
        80..92 => {
            let (lat, lon) = CITIES[rng.below(CITIES.len())];
            geohash::encode(lat + (rng.unit() - 0.5) * 0.1, lon + (rng.unit() - 0.5) * 0.15, 6)
        }
        _ => String::new(),
    };
    let created_at = *NOW - rng.below(90 * DAY as usize) as u64;
    let valid_until = *NOW + 1 + rng.below(90 * DAY as usize) as u64;
    let in_return = if matches!(kind, Kind::Swap | Kind::Barter) { corpus.sentence(rng, 3) } else { String::new() };
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(n as u64).to_be_bytes());
    let title_words = rng.range(2, 6);
    let description_words = rng.range(20, 60);
    let body = Listing {
        key: ListingKey(key),
        revision: 1,
        kind,
        category,
        title: corpus.sentence(rng, title_words),
        description: corpus.sentence(rng, description_words),
        tags,
        terms: Terms { in_return, ..Terms::default() },
        community: corpus.communities[corpus.community_zipf.draw(rng)].clone(),
        location,
        available_from: None,
        available_until: None,
        valid_until,
    };
    (n % AUTHORS, created_at, body)
}

/// Real signed listings, generated and signed on every core (each thread allocates its own, so that
/// the main thread's heap has no freed holes for the index to reuse: the VmRSS delta stays honest).
/// Listing `i` is drawn from its own seed, so the set does not depend on the number of threads.
fn listings(corpus: &Corpus, n: usize) -> Vec<Signed<Listing>> {
    let authors: Vec<Identity> = (0..AUTHORS)
        .map(|a| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(a as u64).to_be_bytes());
            Identity::from_seed(&seed)
        })
        .collect();
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1).max(1);
    let chunk = n.div_ceil(threads).max(1);
    let mut all = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let authors = &authors;
                s.spawn(move || {
                    (start..(start + chunk).min(n))
                        .map(|i| {
                            let mut rng = Rng(0x5eed ^ (i as u64).wrapping_mul(0x9e37_79b9));
                            let (a, created, body) = listing(corpus, &mut rng, i);
                            Signed::sign(&authors[a], created, body).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            all.extend(h.join().unwrap());
        }
    });
    all
}

/// The query mixes: a name and a generator.
type MixFn = fn(&Corpus, &mut Rng) -> Query;

fn two_words(corpus: &Corpus, rng: &mut Rng) -> String {
    let n = rng.range(1, 2);
    corpus.sentence(rng, n)
}

fn mixes() -> Vec<(&'static str, &'static str, MixFn)> {
    vec![
        ("1 text+kind+5km", "1-2 words + one kind + near a point of the area, within 5 km (the target)", |c, rng| {
            let (lat, lon) = metro_point(rng);
            Query { kinds: vec![Kind::ALL[rng.below(6)]], ..Query::with_text(two_words(c, rng)) }.near_position(
                lat,
                lon,
                Some(5.0),
            )
        }),
        ("2 text", "1-2 words, nothing else", |c, rng| Query::with_text(two_words(c, rng))),
        ("3 kind+category+distance", "one kind + one category, sorted by distance from a point", |_, rng| {
            let (lat, lon) = metro_point(rng);
            Query {
                kinds: vec![Kind::ALL[rng.below(6)]],
                category: Some(Category::ALL[rng.below(Category::ALL.len())]),
                sort: Some(Sort::Distance),
                ..Query::default()
            }
            .near_position(lat, lon, None)
        }),
        ("4 common word", "one of the 3 most frequent words alone (worst case)", |c, rng| {
            Query::with_text(c.words[rng.below(3)].clone())
        }),
        ("5 type-ahead", "the first 3 letters of a word (prefix), one kind", |c, rng| {
            let w: String = c.word(rng).chars().take(3).collect();
            Query { kinds: vec![Kind::ALL[rng.below(6)]], ..Query::with_text(w) }
        }),
        ("6 newest in area", "no text: newest within 5 km of a point", |_, rng| {
            let (lat, lon) = metro_point(rng);
            Query::default().near_position(lat, lon, Some(5.0))
        }),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Resident memory of this process, from /proc (Linux), in bytes.
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// A query as `/v1/search` parameters.
fn query_string(q: &Query) -> String {
    let mut parts = Vec::new();
    let mut push = |k: &str, v: String| {
        let enc: String = v
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        parts.push(format!("{k}={enc}"));
    };
    if !q.text.is_empty() {
        push("text", q.text.clone());
    }
    for k in &q.kinds {
        push("kind", serde_json::to_value(k).unwrap().as_str().unwrap().to_owned());
    }
    if let Some(c) = &q.category {
        push("category", serde_json::to_value(c).unwrap().as_str().unwrap().to_owned());
    }
    if let Some(t) = &q.tag {
        push("tag", t.clone());
    }
    if let Some(n) = &q.near {
        push("near", n.clone());
    }
    if let Some(w) = q.within_km {
        push("within_km", w.to_string());
    }
    if let Some(s) = q.sort {
        push("sort", s.as_str().to_owned());
    }
    parts.join("&")
}

/// The mix-1 queries through the whole stack: a node holding the listings (stored through its
/// ingest path), its API server, and an HTTP client on loopback. Prints the percentiles.
fn api_search(all: &[Signed<Listing>], queries: &[Query]) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let home = tempfile::tempdir().unwrap();
        let mut cfg = troc_node::NodeConfig::for_test(home.path().to_path_buf(), Identity::from_seed(&[3; 32]));
        cfg.store_cache_bytes = troc_node::store::DEFAULT_CACHE_BYTES;
        let (node, _events) = troc_node::Node::spawn(cfg).await.unwrap();
        let t = Instant::now();
        for chunk in all.chunks(256) {
            node.ingest_local(chunk.iter().map(|l| l.bytes().to_vec()).collect()).await.unwrap();
        }
        let stored = node.store().stats().unwrap().live_listings;
        println!();
        println!(
            "API: {stored} live listings stored through the node's ingest path in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut api_cfg =
            troc_node::api::ApiConfig::new(home.path().to_path_buf(), troc_node::api::LocalProfile::default());
        api_cfg.addr = "127.0.0.1:0".parse().unwrap();
        let server = troc_node::api::serve(node.clone(), api_cfg).await.unwrap();
        let base = format!("http://{}/v1/search?", server.local_addr());
        let token = troc_node::api::read_token(home.path()).unwrap();
        let http = reqwest::Client::new();
        let urls: Vec<String> = queries.iter().map(|q| format!("{base}{}", query_string(q))).collect();
        for url in urls.iter().take(100) {
            let r = http.get(url).bearer_auth(&token).send().await.unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            black_box(r.bytes().await.unwrap());
        }
        let mut times = Vec::with_capacity(urls.len());
        let mut bytes = 0usize;
        for url in &urls {
            let t = Instant::now();
            let r = http.get(url).bearer_auth(&token).send().await.unwrap();
            let body = r.bytes().await.unwrap();
            times.push(t.elapsed());
            bytes += body.len();
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "API mix 1 over HTTP ({} queries, page of 20, {} bytes per answer on average): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, mean {} ms",
            times.len(),
            bytes / times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap()),
            ms(mean),
        );
        server.shutdown().await;
        node.shutdown().await.unwrap();
    });
}

fn main() {
    troc_node::alloc::configure();
    let benching = std::env::args().any(|a| a == "--bench");
    let (n, per_mix) = if benching { (100_000, 2_000) } else { (10_000, 200) };
    let mut rng = Rng(1);
    let corpus = Corpus::new(&mut rng);
    let t = Instant::now();
    let all = listings(&corpus, n);
    println!("search bench: {n} listings generated and signed in {:.1} s", t.elapsed().as_secs_f64());

    // Build (the upserts alone: reading the store is not counted), with the memory it takes.
    let rss_before = rss();
    let t = Instant::now();
    let mut index = SearchIndex::build(&all, *NOW);
    let build = t.elapsed();
    let rss_after = rss();
    assert_eq!(index.len(), n);
    println!("build: {n} listings in {} ms ({:.1} µs per listing)", ms(build), build.as_secs_f64() * 1e6 / n as f64);
    println!("distinct words: {}", index.word_count());
    let est = index.memory_bytes();
    println!("memory (estimate from sizes): {:.1} MiB, {} bytes per listing", est as f64 / 1048576.0, est / n);
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        let d = b.saturating_sub(a);
        println!(
            "memory (VmRSS delta of the build): {:.1} MiB, {} bytes per listing",
            d as f64 / 1048576.0,
            d / n as u64
        );
    }

    // Percentiles, one query at a time.
    println!();
    println!("| Mix | What | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | mean (ms) | mean matches |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut prepared = Vec::new();
    for (name, what, make) in mixes() {
        let mut qrng = Rng(1000 + name.len() as u64);
        let queries: Vec<Query> = (0..per_mix).map(|_| make(&corpus, &mut qrng)).collect();
        for q in queries.iter().take(100) {
            black_box(index.search(q, *NOW).unwrap());
        }
        let mut times = Vec::with_capacity(queries.len());
        let mut matched = 0usize;
        for q in &queries {
            let t = Instant::now();
            let r = index.search(q, *NOW).unwrap();
            times.push(t.elapsed());
            matched += r.total;
            black_box(r);
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "| {name} | {what} | {} | {} | {} | {} | {} | {} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.9)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap()),
            ms(mean),
            matched / queries.len()
        );
        if name.starts_with('1') {
            assert!(percentile(&times, 0.5) < Duration::from_millis(10), "mix 1 p50 over target");
        }
        prepared.push((name, queries));
    }

    // Incremental costs and saved searches.
    println!();
    let news: Vec<Signed<Listing>> = {
        let mut r = Rng(99);
        let ident = Identity::from_seed(&[9; 32]);
        (0..1000)
            .map(|i| {
                let (_, created, body) = listing(&corpus, &mut r, n + i);
                Signed::sign(&ident, created, body).unwrap()
            })
            .collect()
    };
    let t = Instant::now();
    for l in &news {
        index.upsert(l);
    }
    println!("upsert of a new listing: {:.1} µs", t.elapsed().as_secs_f64() * 1e6 / news.len() as f64);
    let t = Instant::now();
    for l in &news {
        index.remove_id(&l.id());
    }
    println!("remove_id: {:.2} µs", t.elapsed().as_secs_f64() * 1e6 / news.len() as f64);
    let t = Instant::now();
    let expired = index.remove_expired(*NOW);
    println!("remove_expired scan (nothing expired: {expired}): {} ms", ms(t.elapsed()));
    let mut copy = index.clone();
    for l in all.iter().step_by(2) {
        copy.remove_id(&l.id());
    }
    let t = Instant::now();
    copy.compact();
    println!("compact after removing half ({} left): {} ms", copy.len(), ms(t.elapsed()));
    drop(copy);
    let saved: Vec<_> = prepared[0].1.iter().take(100).map(|q| q.prepare().unwrap()).collect();
    let t = Instant::now();
    let mut hits = 0usize;
    for l in &news {
        for p in &saved {
            hits += usize::from(p.matches(l, *NOW));
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / (news.len() * saved.len()) as f64;
    println!("saved search: one listing against one prepared mix-1 query: {per:.2} µs ({hits} matches)");
    let t = Instant::now();
    for l in news.iter().take(100) {
        for q in prepared[0].1.iter().take(100) {
            black_box(troc_node::search::matches(q, l, *NOW).unwrap());
        }
    }
    println!("  the same with the query prepared each time: {:.2} µs", t.elapsed().as_secs_f64() * 1e6 / 10_000.0);

    // End to end: the same listings in a real node, queried over HTTP through the local API.
    api_search(&all, &prepared[0].1);

    // Criterion: each mix cycles through its queries.
    let mut c = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).configure_from_args();
    for (name, queries) in &prepared {
        let mut i = 0usize;
        c.bench_function(&format!("search {n}: mix {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(index.search(&queries[i], *NOW).unwrap())
            })
        });
    }
    let mut i = 0usize;
    c.bench_function("saved search: matches one listing", |b| {
        b.iter(|| {
            i = (i + 1) % (news.len() * saved.len());
            black_box(saved[i % saved.len()].matches(&news[i / saved.len()], *NOW))
        })
    });
    c.final_summary();
}
