//! The Sybil simulation: the real engine on real signed records, from many honest viewers' points
//! of view, against a group of Sybils. Seeded and deterministic (its own SplitMix64 generator, and
//! signing is deterministic), so a seed names one exact run.
//!
//! The world: honest identities in neighbourhoods with heavy-tailed activity (Pareto, α = 1.5),
//! deals mostly within the neighbourhood, some across, spread over the last year, reviewed both
//! ways (a few neutral or negative); Sybils who sign dense fake deals with glowing reviews among
//! themselves. Every deal is a co-signed agreement, a completion and two reviews, signed with
//! ed25519 (in parallel threads). Scenarios add attack edges (real good deals between honest people
//! and Sybils), targeted ones in the viewer's own neighbourhood, camouflage (half of the attackers'
//! honest deals get a negative review), whitewashers (an identity with a history and one fresh
//! negative review comes back with a fresh key) and honest newcomers. `docs/reputation.md`
//! describes the design and the results; `node/examples/trust_sim.rs` runs it.

use std::fmt::Write as _;
use std::time::Instant;

use thiserror::Error;
use troc_protocol::{
    Agreement, Completion, Identity, Kind, ListingKey, Nonce, PartiallySigned, PublicKey, Rating, RecordError,
    RecordId, Review, Signed, SignedRecord, Timestamp, Vouch,
};

use super::engine::{TrustModel, TrustParams};
use super::facts::{OpinionSource, RecordFacts, TrustGraph, Verdict};

const DAY: u64 = 86_400;
/// The simulation's "now".
pub const SIM_NOW: Timestamp = 1_780_000_000;

/// Why the simulation could not run.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("signing a simulated record: {0}")]
    Sign(#[from] RecordError),
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    #[error("a signing thread panicked")]
    Thread,
}

/// The simulation's size and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    pub honest: usize,
    pub sybils: usize,
    pub neighbourhoods: usize,
    /// Honest viewers the metrics are averaged over.
    pub viewers: usize,
    /// Mean deals per honest identity over the year.
    pub deals_per_honest: f64,
    /// Share of honest deals within the neighbourhood.
    pub local_share: f64,
    /// Partners of each Sybil among the Sybils.
    pub sybil_partners: usize,
    /// Fake deals per Sybil pair.
    pub sybil_deals_per_pair: usize,
    /// Vouches each identity gives: an honest person for people they know personally (three in
    /// four in their neighbourhood, the others anywhere), a Sybil for other Sybils.
    pub vouches_per_identity: usize,
    /// Signing threads.
    pub threads: usize,
    pub params: TrustParams,
}

impl SimConfig {
    /// The full run: 1,000 honest identities, 200 Sybils, 100 viewers.
    pub fn full(seed: u64) -> Self {
        SimConfig {
            seed,
            honest: 1000,
            sybils: 200,
            neighbourhoods: 20,
            viewers: 100,
            deals_per_honest: 8.0,
            local_share: 0.85,
            sybil_partners: 16,
            sybil_deals_per_pair: 6,
            vouches_per_identity: 3,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()).min(8),
            params: TrustParams::default(),
        }
    }

    /// The reduced run of the tests: 300 honest, 60 Sybils, 12 viewers.
    pub fn reduced(seed: u64) -> Self {
        SimConfig { honest: 300, sybils: 60, neighbourhoods: 6, viewers: 12, ..Self::full(seed) }
    }

    /// Attack-edge counts and the top-k size scale with the honest population (1,000 → ×1).
    fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.honest as f64 / 1000.0).round() as usize).max(1)
    }

    fn check(&self) -> Result<(), SimError> {
        if self.honest < 50 || self.neighbourhoods == 0 || self.honest / self.neighbourhoods < 10 {
            return Err(SimError::Config("need at least 50 honest identities and 10 per neighbourhood"));
        }
        if self.sybils < 4 || self.sybil_partners == 0 || self.sybil_partners >= self.sybils {
            return Err(SimError::Config("need at least 4 Sybils and fewer partners than Sybils"));
        }
        if self.viewers == 0 {
            return Err(SimError::Config("need at least one viewer"));
        }
        Ok(())
    }
}

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }

    /// A generator for a sub-stream, so scenarios do not shift each other's draws.
    pub fn fork(&mut self, tag: u64) -> SimRng {
        SimRng(self.next_u64() ^ tag.wrapping_mul(0xA24B_AED4_963E_E407))
    }
}

/// Who an identity of the simulation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Honest,
    Sybil,
    /// An honest identity with a history and one fresh negative review (the old key).
    WhitewashOld,
    /// The fresh key the same person comes back with.
    WhitewashFresh,
    /// An honest newcomer with this many good deals.
    Newcomer(usize),
}

/// One deal to sign: agreement by `a` co-signed by `b`, completion by `a`, then each party's review.
#[derive(Debug, Clone)]
struct DealSpec {
    a: usize,
    b: usize,
    at: Timestamp,
    a_rates_b: Rating,
    b_rates_a: Rating,
}

/// Signs deals in parallel; the records come back in the order of the specs (4 per deal).
fn sign_deals(ids: &[Identity], specs: &[DealSpec], salt: u64, threads: usize) -> Result<Vec<SignedRecord>, SimError> {
    let threads = threads.max(1);
    let chunk = specs.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<SignedRecord>, SimError>> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len() * 4);
                    for (k, d) in part.iter().enumerate() {
                        let mut rng = SimRng::new(salt ^ ((c * chunk + k) as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                        sign_one(ids, d, &mut rng, &mut out)?;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(SimError::Thread))).collect()
    });
    let mut all = Vec::with_capacity(specs.len() * 4);
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

fn sign_one(ids: &[Identity], d: &DealSpec, rng: &mut SimRng, out: &mut Vec<SignedRecord>) -> Result<(), SimError> {
    let (a, b) = (&ids[d.a], &ids[d.b]);
    let agreement = Agreement {
        counterparty: *b.public(),
        proposal: RecordId(rng.bytes()),
        listing_author: *a.public(),
        listing_key: ListingKey(rng.bytes()),
        kind: Kind::Lend,
        start: d.at,
        due: Some(d.at + 7 * DAY),
    };
    let agreement = PartiallySigned::sign(a, d.at, agreement)?.countersign(b)?;
    let deal = agreement.id();
    out.push(agreement.into_any());
    out.push(Signed::sign(a, d.at + 8 * DAY, Completion { agreement: deal, note: String::new() })?.into_any());
    for (who, subject, rating) in [(a, b, d.a_rates_b), (b, a, d.b_rates_a)] {
        let review = Review {
            agreement: deal,
            subject: *subject.public(),
            rating,
            facets: Vec::new(),
            text: String::new(),
            nonce: Nonce(rng.bytes()),
        };
        out.push(Signed::sign(who, d.at + 9 * DAY, review)?.into_any());
    }
    Ok(())
}

/// Weighted choice by cumulative weights.
fn pick(cum: &[f64], rng: &mut SimRng) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.unit() * total;
    cum.partition_point(|&c| c <= x).min(cum.len().saturating_sub(1))
}

fn cumulative(w: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    w.map(|x| {
        acc += x;
        acc
    })
    .collect()
}

/// The figures of one scenario, averaged over viewers.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRow {
    pub name: String,
    pub attack_edges: usize,
    /// Sybils' share of the trust the viewer places in others (mean and max over viewers).
    pub sybil_share_mean: f64,
    pub sybil_share_max: f64,
    /// Sybils in the viewer's top k (mean and max over viewers).
    pub top_k_mean: f64,
    pub top_k_max: usize,
    /// Chance a random honest identity outranks a random Sybil, ties half (mean and min).
    pub auc_mean: f64,
    pub auc_min: f64,
}

/// Whitewashing: the fresh key against the old one, for every viewer and whitewasher.
#[derive(Debug, Clone, PartialEq)]
pub struct WhitewashResult {
    pub cases: usize,
    /// Cases where the fresh key outranks (scores above) the old key.
    pub fresh_outranks_old: usize,
    /// Largest fresh / old score ratio.
    pub max_ratio: f64,
    /// Mean old-key score relative to the honest median.
    pub old_vs_median: f64,
}

/// Newcomers with k good deals: how often they reach the honest median.
#[derive(Debug, Clone, PartialEq)]
pub struct NewcomerRow {
    pub deals: usize,
    pub cases: usize,
    /// Share of (viewer, newcomer) cases at or above the honest median.
    pub at_median: f64,
    /// Mean score relative to the honest median.
    pub vs_median: f64,
    /// Lowest score relative to the honest median, over the cases.
    pub min_vs_median: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub config: SimConfig,
    pub top_k: usize,
    pub identities: usize,
    pub records: usize,
    pub rows: Vec<ScenarioRow>,
    pub whitewash: WhitewashResult,
    pub newcomers: Vec<NewcomerRow>,
    pub sign_secs: f64,
    pub engine_secs: f64,
    /// Mean time of one viewer's view (model prepared), in milliseconds.
    pub view_ms: f64,
}

/// The targets of issue 5, for a report.
impl SimReport {
    /// The targets this run missed (empty when all are met).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        let row = |prefix: &str| self.rows.iter().find(|r| r.name.starts_with(prefix));
        if let Some(r) = row("naive")
            && r.auc_mean > 0.2
        {
            f.push(format!("naive sum should fail visibly: AUC {:.3} > 0.2", r.auc_mean));
        }
        for r in self.rows.iter().filter(|r| r.name.starts_with("random attack edges")) {
            if r.attack_edges <= self.config.scaled(50) {
                if r.sybil_share_mean > 0.02 {
                    f.push(format!("{}: Sybil share {:.4} > 0.02", r.name, r.sybil_share_mean));
                }
                if r.top_k_max > 1 {
                    f.push(format!("{}: {} Sybils in a viewer's top {}", r.name, r.top_k_max, self.top_k));
                }
                if r.auc_mean < 0.95 {
                    f.push(format!("{}: mean AUC {:.4} < 0.95", r.name, r.auc_mean));
                }
            }
        }
        if let Some(r) = row("targeted")
            && r.auc_mean < 0.90
        {
            f.push(format!("{}: mean AUC {:.4} < 0.90", r.name, r.auc_mean));
        }
        if self.whitewash.fresh_outranks_old > 0 {
            f.push(format!(
                "whitewash: the fresh key outranks the old key in {} of {} cases",
                self.whitewash.fresh_outranks_old, self.whitewash.cases
            ));
        }
        if let Some(n) = self.newcomers.iter().find(|n| n.deals == 5)
            && n.at_median < 1.0
        {
            f.push(format!("newcomers: with 5 deals, {:.1}% of cases reach the honest median", 100.0 * n.at_median));
        }
        f
    }

    /// The results as markdown tables.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Seed {}: {} honest identities in {} neighbourhoods, {} Sybils, {} viewers; {} identities and {} signed records in all.\n",
            c.seed, c.honest, c.neighbourhoods, c.sybils, c.viewers, self.identities, self.records
        );
        let _ = writeln!(
            s,
            "| Scenario | Attack edges | Sybil share (mean / max) | Sybils in top {} (mean / max) | AUC (mean / min) |",
            self.top_k
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2}% / {:.2}% | {:.2} / {} | {:.3} / {:.3} |",
                r.name,
                r.attack_edges,
                100.0 * r.sybil_share_mean,
                100.0 * r.sybil_share_max,
                r.top_k_mean,
                r.top_k_max,
                r.auc_mean,
                r.auc_min
            );
        }
        let w = &self.whitewash;
        let _ = writeln!(
            s,
            "\nWhitewashing ({} cases: whitewashers × viewers): the fresh key outranks the old key in {} cases; largest fresh/old score ratio {:.3}; the old key (one negative) scores {:.2}× the honest median on average.\n",
            w.cases, w.fresh_outranks_old, w.max_ratio, w.old_vs_median
        );
        let _ = writeln!(
            s,
            "| Newcomer's good deals | Cases | At or above the honest median | Score / honest median (mean / lowest) |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|");
        for n in &self.newcomers {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1}% | {:.2} / {:.2} |",
                n.deals,
                n.cases,
                100.0 * n.at_median,
                n.vs_median,
                n.min_vs_median
            );
        }
        let _ = writeln!(
            s,
            "\nSigning {:.1} s; engine {:.1} s in all ({:.2} ms per view on a prepared model).",
            self.sign_secs, self.engine_secs, self.view_ms
        );
        s
    }
}

/// The simulated world: identities, roles and the records shared by every scenario.
struct World {
    ids: Vec<Identity>,
    keys: Vec<PublicKey>,
    roles: Vec<Role>,
    hood: Vec<usize>,
    /// Honest identities (Role::Honest) per neighbourhood.
    hoods: Vec<Vec<usize>>,
    honest: Vec<usize>,
    sybils: Vec<usize>,
    base: RecordFacts,
    records: usize,
}

/// Runs the simulation.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    config.check()?;
    let mut rng = SimRng::new(config.seed);
    let signing = Instant::now();
    let mut sign_time = 0.0;
    let mut world = build_world(config, &mut rng)?;
    sign_time += signing.elapsed().as_secs_f64();

    let mut vrng = rng.fork(1);
    let mut viewers: Vec<usize> = Vec::new();
    let mut pool = world.honest.clone();
    while viewers.len() < config.viewers.min(pool.len()) {
        let k = vrng.below(pool.len());
        viewers.push(pool.swap_remove(k));
    }
    let top_k = config.scaled(100);

    // Attack-edge records, signed once: random ones (the first n of them for each scenario),
    // camouflage ones.
    let t0 = Instant::now();
    let max_random = config.scaled(100);
    let mut arng = rng.fork(2);
    let random_specs = attack_specs(&world, &world.honest, max_random, false, &mut arng);
    let random_records = sign_deals(&world.ids, &random_specs, arng.next_u64(), config.threads)?;
    let camo_n = config.scaled(50);
    let camo_specs = attack_specs(&world, &world.honest, camo_n, true, &mut arng);
    let camo_records = sign_deals(&world.ids, &camo_specs, arng.next_u64(), config.threads)?;
    sign_time += t0.elapsed().as_secs_f64();
    world.records += random_records.len() + camo_records.len();

    let mut engine_time = 0.0;
    let mut view_time = 0.0;
    let mut views = 0usize;
    let mut rows = Vec::new();
    let mut whitewash = None;
    let mut newcomers = Vec::new();

    // Naive sum of ratings, on the graph with the fewest random attack edges.
    let few = config.scaled(10);
    {
        let graph = scenario_graph(&world.base, &random_records[..few * 4]);
        rows.push(naive_row(&world, &graph, &viewers, top_k, few));
    }

    // (name, attack edges, records, parameters, whether whitewashers and newcomers are measured
    // here: in the world with `mid` random attack edges).
    let mid = config.scaled(50);
    let mut scenarios: Vec<(String, usize, &[SignedRecord], TrustParams, bool)> = Vec::new();
    for n in [config.scaled(10), mid, config.scaled(100)] {
        let records = &random_records[..n * 4];
        scenarios.push((format!("random attack edges ({n})"), n, records, config.params.clone(), n == mid));
    }
    let no_probation = TrustParams { probation_in: 1.0, probation_out: 1.0, ..config.params.clone() };
    scenarios.push((
        format!("random ({mid}), without probation"),
        mid,
        &random_records[..mid * 4],
        no_probation,
        false,
    ));
    let camo_name = format!("camouflage ({camo_n}, half served badly)");
    scenarios.push((camo_name, camo_n, &camo_records, config.params.clone(), false));

    for (name, edges, extra, params, specials) in &scenarios {
        let t = Instant::now();
        let graph = scenario_graph(&world.base, extra);
        let model = TrustModel::new(&graph, SIM_NOW, params.clone());
        let mut m = Metrics::default();
        let evaluate_specials = *specials;
        let mut ww = WhitewashAcc::default();
        let mut nc: Vec<NewcomerAcc> = (1..=5).map(|k| (k, 0, 0.0, f64::INFINITY)).collect();
        let mut nc_cases = 0;
        for &v in &viewers {
            let tv = Instant::now();
            let view = model.view(&world.keys[v], &[]);
            view_time += tv.elapsed().as_secs_f64();
            views += 1;
            let scores: Vec<f64> = world.keys.iter().map(|k| view.score(k)).collect();
            m.add(&world, v, &scores, top_k);
            if evaluate_specials {
                ww.add(&world, v, &scores);
                nc_cases += newcomer_add(&world, v, &scores, &mut nc);
            }
        }
        engine_time += t.elapsed().as_secs_f64();
        rows.push(m.row(name.clone(), *edges));
        if evaluate_specials {
            whitewash = Some(ww.result());
            let per_k = nc_cases / 5;
            newcomers = nc
                .into_iter()
                .map(|(k, hit, ratio, lowest)| NewcomerRow {
                    deals: k,
                    cases: per_k,
                    at_median: if per_k == 0 { 0.0 } else { hit as f64 / per_k as f64 },
                    vs_median: if per_k == 0 { 0.0 } else { ratio / per_k as f64 },
                    min_vs_median: if lowest.is_finite() { lowest } else { 0.0 },
                })
                .collect();
        }
    }

    // Targeted: attack edges inside each viewer's own neighbourhood (own records per viewer).
    let targeted = config.scaled(10);
    let mut m = Metrics::default();
    let mut trng = rng.fork(3);
    for &v in &viewers {
        let hood = &world.hoods[world.hood[v]];
        let specs = attack_specs(&world, hood, targeted, false, &mut trng);
        let ts = Instant::now();
        let extra = sign_deals(&world.ids, &specs, trng.next_u64(), config.threads)?;
        sign_time += ts.elapsed().as_secs_f64();
        let t = Instant::now();
        let graph = scenario_graph(&world.base, &extra);
        let model = TrustModel::new(&graph, SIM_NOW, config.params.clone());
        let view = model.view(&world.keys[v], &[]);
        let scores: Vec<f64> = world.keys.iter().map(|k| view.score(k)).collect();
        m.add(&world, v, &scores, top_k);
        engine_time += t.elapsed().as_secs_f64();
    }
    rows.push(m.row(format!("targeted: {targeted} in the viewer's neighbourhood"), targeted));

    let whitewash =
        whitewash.unwrap_or(WhitewashResult { cases: 0, fresh_outranks_old: 0, max_ratio: 0.0, old_vs_median: 0.0 });
    Ok(SimReport {
        config: config.clone(),
        top_k,
        identities: world.ids.len(),
        records: world.records,
        rows,
        whitewash,
        newcomers,
        sign_secs: sign_time,
        engine_secs: engine_time,
        view_ms: if views == 0 { 0.0 } else { 1000.0 * view_time / views as f64 },
    })
}

fn scenario_graph(base: &RecordFacts, extra: &[SignedRecord]) -> TrustGraph {
    let mut facts = base.clone();
    for r in extra {
        facts.add(r);
    }
    facts.build(SIM_NOW)
}

/// A random time in the last year (leaving room for the completion and reviews).
fn past_year(rng: &mut SimRng) -> Timestamp {
    SIM_NOW - 10 * DAY - (rng.unit() * 355.0 * DAY as f64) as u64
}

/// `n` attack deals between honest identities drawn from `among` and random Sybils; in camouflage,
/// every other one is served badly (the honest party reviews it negatively).
fn attack_specs(world: &World, among: &[usize], n: usize, camouflage: bool, rng: &mut SimRng) -> Vec<DealSpec> {
    (0..n)
        .map(|k| {
            let h = among[rng.below(among.len())];
            let s = world.sybils[rng.below(world.sybils.len())];
            let bad = camouflage && k % 2 == 1;
            DealSpec {
                a: s,
                b: h,
                at: past_year(rng),
                a_rates_b: Rating::Positive,
                b_rates_a: if bad { Rating::Negative } else { Rating::Positive },
            }
        })
        .collect()
}

#[derive(Default)]
struct Population {
    ids: Vec<Identity>,
    roles: Vec<Role>,
    hood: Vec<usize>,
}

impl Population {
    fn add(&mut self, rng: &mut SimRng, role: Role, hood: usize) -> usize {
        self.ids.push(Identity::from_seed(&rng.bytes()));
        self.roles.push(role);
        self.hood.push(hood);
        self.ids.len() - 1
    }
}

fn build_world(config: &SimConfig, rng: &mut SimRng) -> Result<World, SimError> {
    let mut pop = Population::default();
    let honest: Vec<usize> =
        (0..config.honest).map(|i| pop.add(rng, Role::Honest, i % config.neighbourhoods)).collect();
    let sybils: Vec<usize> = (0..config.sybils).map(|_| pop.add(rng, Role::Sybil, usize::MAX)).collect();

    // Honest deals: everyone at least one, then activity-weighted.
    let activity: Vec<f64> = honest.iter().map(|_| (1.0 - rng.unit()).powf(-1.0 / 1.5).min(60.0)).collect();
    let mut hoods: Vec<Vec<usize>> = vec![Vec::new(); config.neighbourhoods];
    for &h in &honest {
        hoods[h % config.neighbourhoods].push(h);
    }
    let hood_cum: Vec<Vec<f64>> = hoods.iter().map(|m| cumulative(m.iter().map(|&h| activity[h]))).collect();
    let all_cum = cumulative(activity.iter().copied());
    let mut specs = Vec::new();
    let total = (config.honest as f64 * config.deals_per_honest / 2.0) as usize;
    let honest_deal = |a: usize, b: usize, rng: &mut SimRng| {
        // Most deals go well; a few get a neutral or a negative review from one side.
        let mut ratings = [Rating::Positive, Rating::Positive];
        let x = rng.unit();
        if x < 0.03 {
            ratings[rng.below(2)] = Rating::Neutral;
        } else if x < 0.05 {
            ratings[rng.below(2)] = Rating::Negative;
        }
        DealSpec { a, b, at: past_year(rng), a_rates_b: ratings[0], b_rates_a: ratings[1] }
    };
    for k in 0..total {
        let a = if k < config.honest { honest[k] } else { honest[pick(&all_cum, rng)] };
        let b = loop {
            let b = if rng.unit() < config.local_share {
                let h = a % config.neighbourhoods;
                hoods[h][pick(&hood_cum[h], rng)]
            } else {
                honest[pick(&all_cum, rng)]
            };
            if b != a {
                break b;
            }
        };
        specs.push(honest_deal(a, b, rng));
    }
    // Who has at least 3 distinct counterparties so far (for whitewashers and newcomers' partners).
    let mut partners: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); pop.ids.len()];
    for d in &specs {
        partners[d.a].insert(d.b);
        partners[d.b].insert(d.a);
    }

    // Whitewashers: honest identities with at least 5 counterparties; one recent negative review
    // from a neighbour, then a fresh key with two good deals with established neighbours.
    let n_ww = (config.honest / 200).clamp(2, 10);
    let mut ww_pool: Vec<usize> = honest.iter().copied().filter(|&h| partners[h].len() >= 5).collect();
    let mut whitewashers = Vec::new();
    while whitewashers.len() < n_ww && !ww_pool.is_empty() {
        whitewashers.push(ww_pool.swap_remove(rng.below(ww_pool.len())));
    }
    let settled = |h: usize, partners: &[std::collections::BTreeSet<usize>]| partners[h].len() >= 3;
    let mut special_specs = Vec::new();
    for &old in &whitewashers {
        pop.roles[old] = Role::WhitewashOld;
        let h = pop.hood[old];
        let neighbours: Vec<usize> = hoods[h].iter().copied().filter(|&x| x != old && settled(x, &partners)).collect();
        if neighbours.is_empty() {
            continue;
        }
        let victim = neighbours[rng.below(neighbours.len())];
        special_specs.push(DealSpec {
            a: old,
            b: victim,
            at: SIM_NOW - 25 * DAY,
            a_rates_b: Rating::Positive,
            b_rates_a: Rating::Negative,
        });
        let fresh = pop.add(rng, Role::WhitewashFresh, h);
        for (i, days) in [16u64, 12].into_iter().enumerate() {
            let p = neighbours[(rng.below(neighbours.len()) + i) % neighbours.len()];
            special_specs.push(DealSpec {
                a: fresh,
                b: p,
                at: SIM_NOW - days * DAY,
                a_rates_b: Rating::Positive,
                b_rates_a: Rating::Positive,
            });
        }
    }
    // Newcomers: for k in 1..=5, some newcomers with k good deals with distinct established
    // neighbours, one every 8 days from 45 days ago (five deals span 32 days).
    let per_k = (config.honest / 250).max(2);
    for k in 1..=5 {
        for _ in 0..per_k {
            let h = rng.below(config.neighbourhoods);
            let mut neighbours: Vec<usize> =
                hoods[h].iter().copied().filter(|&x| pop.roles[x] == Role::Honest && settled(x, &partners)).collect();
            let me = pop.add(rng, Role::Newcomer(k), h);
            for i in 0..k {
                if neighbours.is_empty() {
                    break;
                }
                let p = neighbours.swap_remove(rng.below(neighbours.len()));
                special_specs.push(DealSpec {
                    a: me,
                    b: p,
                    at: SIM_NOW - (45 - 8 * i as u64) * DAY,
                    a_rates_b: Rating::Positive,
                    b_rates_a: Rating::Positive,
                });
            }
        }
    }

    // Sybils: a dense ring lattice of fake deals with glowing reviews.
    let half = config.sybil_partners.div_ceil(2);
    for (i, &s) in sybils.iter().enumerate() {
        for off in 1..=half {
            let t = sybils[(i + off) % sybils.len()];
            for _ in 0..config.sybil_deals_per_pair {
                specs.push(DealSpec {
                    a: s,
                    b: t,
                    at: past_year(rng),
                    a_rates_b: Rating::Positive,
                    b_rates_a: Rating::Positive,
                });
            }
        }
    }
    specs.extend(special_specs);
    // Vouches: every honest person vouches for a few people they know personally, most in their
    // neighbourhood, some anywhere; every Sybil for other Sybils. Newcomers, whitewashers' fresh
    // keys and their old keys give and receive none (so nothing in their figures comes from them).
    let mut vouch_pairs: Vec<(usize, usize)> = Vec::new();
    for &h in &honest {
        if pop.roles[h] != Role::Honest {
            continue;
        }
        let mut chosen = std::collections::BTreeSet::new();
        let mut tries = 0;
        while chosen.len() < config.vouches_per_identity && tries < 20 * config.vouches_per_identity.max(1) {
            tries += 1;
            let pool = if rng.unit() < 0.75 { &hoods[h % config.neighbourhoods] } else { &honest };
            let x = pool[rng.below(pool.len())];
            if x != h && pop.roles[x] == Role::Honest {
                chosen.insert(x);
            }
        }
        vouch_pairs.extend(chosen.into_iter().map(|x| (h, x)));
    }
    for (i, &s) in sybils.iter().enumerate() {
        let mut chosen = std::collections::BTreeSet::new();
        while chosen.len() < config.vouches_per_identity.min(sybils.len() - 1) {
            let x = sybils[rng.below(sybils.len())];
            if x != sybils[i] {
                chosen.insert(x);
            }
        }
        vouch_pairs.extend(chosen.into_iter().map(|x| (s, x)));
    }
    let Population { ids, roles, hood } = pop;
    let mut records = sign_deals(&ids, &specs, rng.next_u64(), config.threads)?;
    for (from, to) in vouch_pairs {
        let at = past_year(rng);
        let vouch = Vouch { subject: *ids[to].public(), context: "known".into(), expires_at: SIM_NOW + 365 * DAY };
        records.push(Signed::sign(&ids[from], at, vouch)?.into_any());
    }
    let mut base = RecordFacts::new();
    for r in &records {
        base.add(r);
    }
    let keys = ids.iter().map(|i| *i.public()).collect();
    let honest: Vec<usize> = (0..ids.len()).filter(|&i| roles[i] == Role::Honest).collect();
    for m in hoods.iter_mut() {
        m.retain(|&x| roles[x] == Role::Honest);
    }
    Ok(World { ids, keys, roles, hood, hoods, honest, sybils, base, records: records.len() })
}

/// AUC: the chance a random honest score beats a random Sybil score, ties counted half.
fn auc(honest: &[f64], sybil: &[f64]) -> f64 {
    if honest.is_empty() || sybil.is_empty() {
        return 0.5;
    }
    let mut s = sybil.to_vec();
    s.sort_by(f64::total_cmp);
    let mut wins = 0.0;
    for &h in honest {
        let below = s.partition_point(|&x| x < h);
        let equal = s.partition_point(|&x| x <= h) - below;
        wins += below as f64 + 0.5 * equal as f64;
    }
    wins / (honest.len() as f64 * s.len() as f64)
}

#[derive(Default)]
struct Metrics {
    share: Vec<f64>,
    top: Vec<usize>,
    auc: Vec<f64>,
}

impl Metrics {
    fn add(&mut self, world: &World, viewer: usize, scores: &[f64], top_k: usize) {
        let honest: Vec<f64> = world.honest.iter().filter(|&&h| h != viewer).map(|&h| scores[h]).collect();
        let sybil: Vec<f64> = world.sybils.iter().map(|&s| scores[s]).collect();
        let total: f64 = scores.iter().enumerate().filter(|(i, _)| *i != viewer).map(|(_, s)| s).sum();
        let sybil_total: f64 = sybil.iter().sum();
        self.share.push(if total > 0.0 { sybil_total / total } else { 0.0 });
        let mut order: Vec<usize> = (0..scores.len()).filter(|&i| i != viewer && scores[i] > 0.0).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        self.top.push(order.iter().take(top_k).filter(|&&i| world.roles[i] == Role::Sybil).count());
        self.auc.push(auc(&honest, &sybil));
    }

    fn row(&self, name: String, attack_edges: usize) -> ScenarioRow {
        let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        ScenarioRow {
            name,
            attack_edges,
            sybil_share_mean: mean(&self.share),
            sybil_share_max: self.share.iter().copied().fold(0.0, f64::max),
            top_k_mean: mean(&self.top.iter().map(|&x| x as f64).collect::<Vec<_>>()),
            top_k_max: self.top.iter().copied().max().unwrap_or(0),
            auc_mean: mean(&self.auc),
            auc_min: self.auc.iter().copied().fold(1.0, f64::min),
        }
    }
}

/// The naive baseline: everyone's score is their positive minus negative reviews received, the same
/// for every viewer.
fn naive_row(world: &World, graph: &TrustGraph, viewers: &[usize], top_k: usize, edges: usize) -> ScenarioRow {
    let index: std::collections::HashMap<[u8; 32], usize> =
        world.keys.iter().enumerate().map(|(i, k)| (*k.as_bytes(), i)).collect();
    let mut scores = vec![0.0f64; world.keys.len()];
    for o in graph.opinions().iter().filter(|o| o.source == OpinionSource::Review) {
        if let Some(&j) = index.get(o.about.as_bytes()) {
            match o.verdict {
                Verdict::Positive => scores[j] += 1.0,
                Verdict::Negative => scores[j] -= 1.0,
                Verdict::Neutral | Verdict::Satisfied => {}
            }
        }
    }
    // Shares need non-negative scores.
    let positive: Vec<f64> = scores.iter().map(|s| s.max(0.0)).collect();
    let mut m = Metrics::default();
    for &v in viewers {
        m.add(world, v, &positive, top_k);
        // AUC on the raw sums (negatives included).
        let honest: Vec<f64> = world.honest.iter().filter(|&&h| h != v).map(|&h| scores[h]).collect();
        let sybil: Vec<f64> = world.sybils.iter().map(|&s| scores[s]).collect();
        if let Some(last) = m.auc.last_mut() {
            *last = auc(&honest, &sybil);
        }
    }
    m.row("naive sum of ratings".into(), edges)
}

/// The honest median score in a view (the viewer excluded).
fn honest_median(world: &World, viewer: usize, scores: &[f64]) -> f64 {
    let mut h: Vec<f64> = world.honest.iter().filter(|&&x| x != viewer).map(|&x| scores[x]).collect();
    h.sort_by(f64::total_cmp);
    h.get(h.len() / 2).copied().unwrap_or(0.0)
}

#[derive(Default)]
struct WhitewashAcc {
    cases: usize,
    outranked: usize,
    max_ratio: f64,
    old_vs_median: f64,
}

impl WhitewashAcc {
    fn add(&mut self, world: &World, viewer: usize, scores: &[f64]) {
        let median = honest_median(world, viewer, scores);
        let olds = (0..world.roles.len()).filter(|&i| world.roles[i] == Role::WhitewashOld);
        let fresh = (0..world.roles.len()).filter(|&i| world.roles[i] == Role::WhitewashFresh);
        // Old and fresh keys were created in the same order.
        for (old, fresh) in olds.zip(fresh) {
            if old == viewer {
                continue;
            }
            self.cases += 1;
            if scores[fresh] > scores[old] {
                self.outranked += 1;
            }
            if scores[old] > 0.0 {
                self.max_ratio = self.max_ratio.max(scores[fresh] / scores[old]);
            } else if scores[fresh] > 0.0 {
                self.max_ratio = f64::INFINITY;
            }
            if median > 0.0 {
                self.old_vs_median += scores[old] / median;
            }
        }
    }

    fn result(&self) -> WhitewashResult {
        WhitewashResult {
            cases: self.cases,
            fresh_outranks_old: self.outranked,
            max_ratio: self.max_ratio,
            old_vs_median: if self.cases == 0 { 0.0 } else { self.old_vs_median / self.cases as f64 },
        }
    }
}

/// Per number of deals: (deals, cases at or above the median, sum of score/median, lowest
/// score/median).
type NewcomerAcc = (usize, usize, f64, f64);

/// Adds one viewer's newcomer cases to `acc`; returns the cases.
fn newcomer_add(world: &World, viewer: usize, scores: &[f64], acc: &mut [NewcomerAcc]) -> usize {
    let median = honest_median(world, viewer, scores);
    let mut cases = 0;
    for (i, role) in world.roles.iter().enumerate() {
        if let Role::Newcomer(k) = role
            && let Some(slot) = acc.iter_mut().find(|(d, _, _, _)| d == k)
        {
            cases += 1;
            if scores[i] >= median {
                slot.1 += 1;
            }
            if median > 0.0 {
                slot.2 += scores[i] / median;
                slot.3 = slot.3.min(scores[i] / median);
            }
        }
    }
    cases
}
