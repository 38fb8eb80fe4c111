//! The trust engine: personalised EigenTrust with diminishing returns, time decay, probation for
//! young identities and a distrust term, computed from one viewer's point of view; the score is
//! the corroborated trust (what reached the identity through one of the viewer's own branches
//! only counts little) per unit of opinion weight received (who is inside the honest region the
//! viewer's trust reaches) times the recent evidence, up to a cap (how much they have shown lately).
//!
//! Two stages. [`TrustModel::new`] turns a [`TrustGraph`] into a sparse matrix of pairwise opinions
//! at a given `now` (what does not depend on the viewer: decay, diminishing returns, negatives,
//! vouches). [`TrustModel::view`] then computes one viewer's [`TrustView`]: who is established
//! (a fixpoint seeded on the viewer), the local trust matrix with the probation factors, the
//! pre-trust vector on the viewer and their own counterparties, the power iteration (a first
//! pass split by branch, then the relay's pass), the score (corroborated trust per weight, recent
//! evidence, distrust), and each identity's standing and evidence.
//! Everything is deterministic: identities are indexed in the order of their key bytes, edges are
//! sorted, sums run in index order, and the iteration stops on a fixed criterion. The model and
//! the parameters are documented with their reasons in `docs/reputation.md`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use troc_protocol::{PublicKey, Timestamp};

use super::facts::{DealOutcome, KeyBytes, TrustGraph, Verdict, kb};

const DAY: u64 = 86_400;

/// The stop of the first pass when the relay is on (`TrustParams::relay_fraction`): its result
/// only sets the relay factors and where the second pass starts, and the simulation's figures are
/// the same with this as with 1e-10 (`docs/reputation.md`, section 6).
const RELAY_FIRST_PASS_TOLERANCE: f64 = 1e-6;

/// Lanes of the branch-labelled pass (`TrustParams::branch_limit`): the viewer's
/// `BRANCH_LANES - 1` first-hand branches with the largest pre-trust get a lane each, the others
/// share the last one. Eight lanes of `f64` are one cache line per identity; the simulation's
/// figures are the same with 16 (`docs/reputation.md`, sections 3.4 and 5.3).
const BRANCH_LANES: usize = 8;

/// One identity's trust, split by the viewer's first-hand branch it last came through.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Lanes([f64; BRANCH_LANES]);

impl Lanes {
    fn total(&self) -> f64 {
        self.0.iter().sum()
    }

    /// The share of this trust that counts when what came through the largest branch counts up
    /// to `limit` times what came through all the others, and the excess at `excess_weight`. The
    /// last lane holds the small branches together, so it never counts as one branch.
    fn counted(&self, limit: f64, excess_weight: f64) -> f64 {
        let total = self.total();
        if total <= 0.0 {
            return 1.0;
        }
        let largest = self.0[..BRANCH_LANES - 1].iter().copied().fold(0.0, f64::max);
        let excess = (largest - limit * (total - largest)).min(total);
        if excess > 0.0 { 1.0 - (1.0 - excess_weight) * excess / total } else { 1.0 }
    }
}

/// Every parameter of the engine. The defaults are the documented ones (`docs/reputation.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustParams {
    /// EigenTrust's teleport probability `a`: the share of trust sent back to the pre-trust vector
    /// at each step. Higher keeps trust closer to the viewer (and further from Sybils).
    pub damping: f64,
    /// The share of the pre-trust vector on the viewer; the rest goes to the viewer's own
    /// counterparties and vouchees, in proportion to the viewer's opinions of them.
    pub viewer_seed: f64,
    /// Half-life of an opinion, in seconds.
    pub half_life_secs: u64,
    /// Weight of a positive review.
    pub positive: f64,
    /// Weight of a completion without a review.
    pub satisfied: f64,
    /// Weight of a negative opinion in the pairwise opinion (subtracted; not diminished).
    pub negative: f64,
    /// Weight of the reported negatives against the reported positives in the distrust factor.
    pub distrust: f64,
    /// Weight of a live vouch (added to the pair's positive weight, not decayed).
    pub vouch: f64,
    /// Factor on the trust given to an identity that is not established.
    pub probation_in: f64,
    /// Factor on the trust given by an identity that is not established.
    pub probation_out: f64,
    /// How long after its first deal with an established counterparty an identity can be
    /// established, in seconds.
    pub establish_secs: u64,
    /// How many distinct established counterparties an identity needs to be established.
    pub establish_counterparties: usize,
    /// A counterparty counts as trusted by the viewer when established and its level (trust per
    /// weight with the distrust factor, before the recent evidence: trust is not activity) is at
    /// least this fraction of the mean level of established identities.
    pub trusted_fraction: f64,
    /// The final score is the trust per unit of net opinion weight received, the divisor floored
    /// at this (about one fresh good deal), so a thin identity is not inflated by a tiny divisor.
    pub weight_floor: f64,
    /// Half-life of an opinion in the *recent evidence* (`R`), in seconds: shorter than
    /// `half_life_secs`, so that what an identity did lately counts most in how much evidence it
    /// has, while the trust flow keeps the longer memory.
    pub evidence_half_life_secs: u64,
    /// The final score is the trust per weight times `min(R, evidence_cap) / evidence_cap`: more
    /// recent evidence counts up to about this many recent good deals, and no further (a dense
    /// group of fakes gains nothing from its volume).
    pub evidence_cap: f64,
    /// The relay: after a first pass, an identity whose trust per weight is below this fraction
    /// of the reference (the trust-weighted median trust per weight) passes on only that
    /// proportion of its trust in a second pass; the rest goes back to the viewer's seed. Honest
    /// identities are nearly all above it (trust per weight is nearly even among them), a Sybil
    /// group reached over a few attack edges is far below, so its trust leaks out at every step
    /// inside the group. 0 turns the second pass off.
    pub relay_fraction: f64,
    /// Corroboration: each identity's trust is split by the viewer's first-hand branch (the
    /// viewer's own counterparty or vouchee) it last came through, and what came through its
    /// largest branch counts up to `branch_limit` times what came through all the others. An honest
    /// identity hears of the viewer through many branches at once; a Sybil group reached over one
    /// of the viewer's own deals hears through that one only. The viewer's first-hand identities
    /// keep their whole trust (they are the viewer's own experience). 0 turns it off.
    pub branch_limit: f64,
    /// The weight of the trust beyond `branch_limit`: above 0, so that identities heard of
    /// through one branch only (a friend's friend the viewer knows of through that friend alone)
    /// keep their order among themselves and a score, below those heard of through several.
    pub uncorroborated: f64,
    /// Young identities (first co-signed deal less than `establish_secs` ago) rank below every
    /// other identity with a positive score: their scores are scaled so that the highest is this
    /// fraction of the lowest positive score of the others (and never scaled up).
    pub young_score: f64,
    /// The power iteration stops when the L1 change of the trust vector is below this.
    pub tolerance: f64,
    /// ... or after this many steps.
    pub max_iterations: u32,
}

impl Default for TrustParams {
    fn default() -> Self {
        TrustParams {
            damping: 0.05,
            viewer_seed: 0.5,
            half_life_secs: 180 * DAY,
            positive: 1.0,
            satisfied: 0.5,
            negative: 2.0,
            distrust: 2.0,
            vouch: 0.3,
            probation_in: 0.25,
            probation_out: 0.0,
            establish_secs: 30 * DAY,
            establish_counterparties: 3,
            trusted_fraction: 0.1,
            weight_floor: 1.0,
            evidence_half_life_secs: 60 * DAY,
            evidence_cap: 4.0,
            relay_fraction: 0.5,
            branch_limit: 1.0,
            uncorroborated: 0.02,
            young_score: 0.5,
            tolerance: 1e-10,
            max_iterations: 1000,
        }
    }
}

/// Where an identity stands from the viewer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The viewer themselves.
    Viewer,
    /// On the viewer's block list: not computed.
    Blocked,
    /// Not enough evidence: no completed deal with anyone the viewer trusts.
    Unknown,
    /// Has dealt with someone the viewer trusts but is not established yet.
    Probation,
    /// Established: old enough, with enough established counterparties.
    Established,
}

/// What the score rests on. Counts cover valid deals and opinions only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Evidence {
    /// Deals with the outcome `completed`.
    pub deals_completed: u32,
    /// Distinct counterparties in completed deals.
    pub counterparties: u32,
    /// Of those, how many the viewer trusts (established, with a score of at least
    /// `trusted_fraction` of the mean established level, before the recent evidence; the viewer
    /// trusts themselves).
    pub trusted_counterparties: u32,
    /// Positive opinions received (reviews and completions without a review).
    pub positives: u32,
    /// Negative opinions received (negative reviews, no-shows, disputes, damaged or incomplete).
    pub negatives: u32,
    /// Live vouches received.
    pub vouches_received: u32,
    /// When the identity became established in the viewer's view, if it is (`None` for the viewer).
    pub established_since: Option<Timestamp>,
}

/// One identity as the viewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonTrust {
    pub identity: PublicKey,
    /// The final score: the trust that reaches the identity per unit of opinion weight it
    /// received, times its recent evidence (up to the cap) and the distrust factor.
    /// Comparable within one view only.
    pub score: f64,
    /// 1 for the highest score among the others with a score above zero; `None` for the viewer,
    /// the blocked and those with no score.
    pub rank: Option<u32>,
    pub standing: Standing,
    pub evidence: Evidence,
}

/// Figures about a computed view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewStats {
    /// Identities in the graph.
    pub identities: u32,
    /// Of which established in this view (the viewer included).
    pub established: u32,
    /// Power-iteration steps.
    pub iterations: u32,
    /// Whether the iteration met the tolerance (rather than the step limit).
    pub converged: bool,
    /// The trust the viewer keeps on themselves (EigenTrust's share of the viewer).
    pub self_trust: f64,
}

/// The viewer-independent part: identities and pairwise opinions at `now`.
#[derive(Debug)]
pub(crate) struct Net {
    pub keys: Vec<PublicKey>,
    pub index: HashMap<KeyBytes, u32>,
    /// Out-edges in CSR form, by source then target index.
    pub row: Vec<usize>,
    pub col: Vec<u32>,
    /// Positive weight (diminished, decayed, plus a live vouch).
    pub pos: Vec<f64>,
    /// Negative weight (decayed, not yet multiplied by `negative`).
    pub neg: Vec<f64>,
    /// The positive weight decayed with `evidence_half_life_secs` (the recent evidence).
    pub pos_recent: Vec<f64>,
    /// Opinions behind the edge (deals where the source expressed one).
    pub deals: Vec<u32>,
    pub vouched: Vec<bool>,
    /// Age witnesses: `e -> (x, t)`: e completed a deal with x at time t without a negative opinion
    /// of x; e can vouch x's age if e is established.
    pub wit_row: Vec<usize>,
    pub wit: Vec<(u32, Timestamp)>,
    /// Distinct counterparties in completed deals.
    pub cp_row: Vec<usize>,
    pub cp: Vec<u32>,
    pub deals_completed: Vec<u32>,
    /// Time of the earliest completed deal (co-signed agreement), `Timestamp::MAX` if none.
    pub first_deal: Vec<Timestamp>,
    pub positives: Vec<u32>,
    pub negatives: Vec<u32>,
    pub vouches_in: Vec<u32>,
}

impl Net {
    pub fn n(&self) -> usize {
        self.keys.len()
    }

    pub fn edges(&self, i: usize) -> std::ops::Range<usize> {
        self.row[i]..self.row[i + 1]
    }
}

/// A [`TrustGraph`] prepared at a given `now`, ready to compute any viewer's [`TrustView`].
#[derive(Debug, Clone)]
pub struct TrustModel {
    params: TrustParams,
    now: Timestamp,
    net: Arc<Net>,
}

fn csr<T: Copy>(n: usize, mut items: Vec<(u32, T)>) -> (Vec<usize>, Vec<T>) {
    // Stable: items keep their order within a row.
    items.sort_by_key(|(i, _)| *i);
    let mut row = vec![0usize; n + 1];
    for (i, _) in &items {
        row[*i as usize + 1] += 1;
    }
    for i in 0..n {
        row[i + 1] += row[i];
    }
    (row, items.into_iter().map(|(_, v)| v).collect())
}

/// `a.cmp(b)` for 32-byte strings, by four big-endian words (the library comparison calls
/// `memcmp`, which dominated the preparation).
fn cmp32(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    let word = |x: &[u8; 32], i: usize| {
        u64::from_be_bytes([x[i], x[i + 1], x[i + 2], x[i + 3], x[i + 4], x[i + 5], x[i + 6], x[i + 7]])
    };
    word(a, 0)
        .cmp(&word(b, 0))
        .then_with(|| word(a, 8).cmp(&word(b, 8)))
        .then_with(|| word(a, 16).cmp(&word(b, 16)))
        .then_with(|| word(a, 24).cmp(&word(b, 24)))
}

impl TrustModel {
    /// Prepares `graph` at `now` with `params`.
    pub fn new(graph: &TrustGraph, now: Timestamp, params: TrustParams) -> Self {
        // Every identity once, in key order. Each party or vouch end is a slot; the slots are sorted
        // by key (the first eight bytes as an integer first, which decides almost every comparison)
        // and each slot gets its identity's index, so deals and opinions need no key look-ups.
        let deal_list: Vec<&super::facts::Deal> = graph.deals().collect();
        let mut seen: Vec<&PublicKey> = Vec::with_capacity(deal_list.len() * 2 + graph.vouches().len() * 2);
        for d in &deal_list {
            seen.extend(&d.parties);
        }
        for v in graph.vouches() {
            seen.push(&v.from);
            seen.push(&v.to);
        }
        let prefix = |k: &PublicKey| {
            let b = k.as_bytes();
            u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        };
        let mut order: Vec<(u64, u32)> = seen.iter().enumerate().map(|(i, k)| (prefix(k), i as u32)).collect();
        order.sort_unstable();
        let mut slot_ix = vec![0u32; seen.len()];
        let mut keys: Vec<PublicKey> = Vec::new();
        let mut run_keys: Vec<&PublicKey> = Vec::new();
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            // The distinct keys sharing this prefix (almost always one), in byte order.
            let same = |a: &PublicKey, b: &PublicKey| cmp32(a.as_bytes(), b.as_bytes()).is_eq();
            run_keys.clear();
            for &(_, slot) in run {
                let k = seen[slot as usize];
                if !run_keys.iter().any(|r| same(r, k)) {
                    run_keys.push(k);
                }
            }
            run_keys.sort_unstable_by(|a, b| cmp32(a.as_bytes(), b.as_bytes()));
            let base = keys.len();
            keys.extend(run_keys.iter().copied());
            for &(_, slot) in run {
                let k = seen[slot as usize];
                let at = run_keys.iter().position(|r| same(r, k)).unwrap_or(0);
                slot_ix[slot as usize] = (base + at) as u32;
            }
        }
        let prefixes: Vec<u64> = keys.iter().map(prefix).collect();
        let index: HashMap<KeyBytes, u32> = keys.iter().enumerate().map(|(i, k)| (kb(k), i as u32)).collect();
        let n = keys.len();
        // For the rare fact outside the deals' order: bisection on the prefixes, then the bytes.
        let ix = |k: &PublicKey| {
            let p = prefix(k);
            let start = prefixes.partition_point(|&x| x < p);
            (start..n).take_while(|&i| prefixes[i] == p).find(|&i| &keys[i] == k).map(|i| i as u32)
        };

        let half_life = params.half_life_secs.max(1) as f64;
        let decay = |at: Timestamp| 0.5f64.powf(now.saturating_sub(at) as f64 / half_life);
        let evidence_half_life = params.evidence_half_life_secs.max(1) as f64;
        let recent = |at: Timestamp| 0.5f64.powf(now.saturating_sub(at) as f64 / evidence_half_life);

        // Per opinion: (from, to, verdict, decayed weight). Opinions are sorted by deal like the
        // deals, so one walk finds each opinion's deal; each deal keeps its parties' verdicts.
        #[derive(Clone, Copy)]
        struct Op {
            from: u32,
            to: u32,
            verdict: Verdict,
            w: f64,
            /// The weight decayed with the evidence half-life.
            r: f64,
        }
        let mut ops: Vec<Op> = Vec::with_capacity(graph.opinions().len());
        let mut positives = vec![0u32; n];
        let mut negatives = vec![0u32; n];
        let mut verdicts: Vec<[Option<Verdict>; 2]> = vec![[None, None]; deal_list.len()];
        let mut di = 0usize;
        for o in graph.opinions() {
            while di < deal_list.len() && cmp32(deal_list[di].id.as_bytes(), o.deal.as_bytes()).is_lt() {
                di += 1;
            }
            let same = |a: &PublicKey, b: &PublicKey| cmp32(a.as_bytes(), b.as_bytes()).is_eq();
            let in_deal =
                deal_list.get(di).filter(|d| cmp32(d.id.as_bytes(), o.deal.as_bytes()).is_eq()).and_then(|d| {
                    let side = d.parties.iter().position(|p| same(p, &o.from))?;
                    same(&d.parties[1 - side], &o.about).then_some(side)
                });
            let (from, to) = match in_deal {
                Some(side) => {
                    verdicts[di][side] = Some(o.verdict);
                    (slot_ix[2 * di + side], slot_ix[2 * di + 1 - side])
                }
                None => {
                    let (Some(from), Some(to)) = (ix(&o.from), ix(&o.about)) else { continue };
                    (from, to)
                }
            };
            let base = match o.verdict {
                Verdict::Positive => params.positive,
                Verdict::Satisfied => params.satisfied,
                Verdict::Neutral => 0.0,
                Verdict::Negative => 1.0,
            };
            match o.verdict {
                Verdict::Positive | Verdict::Satisfied => positives[to as usize] += 1,
                Verdict::Negative => negatives[to as usize] += 1,
                Verdict::Neutral => {}
            }
            ops.push(Op { from, to, verdict: o.verdict, w: base * decay(o.at), r: base * recent(o.at) });
        }
        // Strongest positive first within a pair, so the k-th strongest weighs 1/k.
        // A counting sort by author, then each author's few opinions by (subject, weight, verdict).
        let ops = {
            let mut start = vec![0usize; n + 1];
            for o in &ops {
                start[o.from as usize + 1] += 1;
            }
            for i in 0..n {
                start[i + 1] += start[i];
            }
            let mut sorted: Vec<Op> = ops.clone();
            let mut next = start.clone();
            for o in ops {
                sorted[next[o.from as usize]] = o;
                next[o.from as usize] += 1;
            }
            for i in 0..n {
                sorted[start[i]..start[i + 1]]
                    .sort_unstable_by(|a, b| a.to.cmp(&b.to).then(b.w.total_cmp(&a.w)).then(a.verdict.cmp(&b.verdict)));
            }
            sorted
        };
        let vbase = deal_list.len() * 2;
        let mut vouch_pairs: Vec<(u32, u32)> =
            (0..graph.vouches().len()).map(|k| (slot_ix[vbase + 2 * k], slot_ix[vbase + 2 * k + 1])).collect();
        vouch_pairs.sort_unstable();
        vouch_pairs.dedup();
        let mut vouches_in = vec![0u32; n];
        for (_, to) in &vouch_pairs {
            vouches_in[*to as usize] += 1;
        }

        // Merge opinions and vouches into one edge list, sorted by (from, to).
        #[derive(Clone, Copy)]
        struct Edge {
            to: u32,
            pos: f64,
            neg: f64,
            pos_recent: f64,
            deals: u32,
            vouched: bool,
        }
        let mut edges: Vec<(u32, Edge)> = Vec::new();
        let mut k = 0usize;
        let mut v = 0usize;
        while k < ops.len() || v < vouch_pairs.len() {
            let next_op = ops.get(k).map(|o| (o.from, o.to));
            let next_v = vouch_pairs.get(v).copied();
            let pair = match (next_op, next_v) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            let mut e = Edge { to: pair.1, pos: 0.0, neg: 0.0, pos_recent: 0.0, deals: 0, vouched: false };
            let mut nth_positive = 0u32;
            while let Some(o) = ops.get(k).filter(|o| (o.from, o.to) == pair) {
                e.deals += 1;
                match o.verdict {
                    Verdict::Positive | Verdict::Satisfied => {
                        nth_positive += 1;
                        e.pos += o.w / f64::from(nth_positive);
                        e.pos_recent += o.r / f64::from(nth_positive);
                    }
                    Verdict::Negative => e.neg += o.w,
                    Verdict::Neutral => {}
                }
                k += 1;
            }
            if next_v == Some(pair) {
                e.vouched = true;
                e.pos += params.vouch;
                e.pos_recent += params.vouch;
                v += 1;
            }
            edges.push((pair.0, e));
        }
        let (row, edges) = csr(n, edges);
        let col = edges.iter().map(|e| e.to).collect();
        let pos = edges.iter().map(|e| e.pos).collect();
        let neg = edges.iter().map(|e| e.neg).collect();
        let pos_recent = edges.iter().map(|e| e.pos_recent).collect();
        let deals_n = edges.iter().map(|e| e.deals).collect();
        let vouched = edges.iter().map(|e| e.vouched).collect();

        // Age witnesses and counterparties, from completed deals.
        let mut wit: Vec<(u32, (u32, Timestamp))> = Vec::new();
        let mut cps: Vec<(u32, u32)> = Vec::new();
        let mut deals_completed = vec![0u32; n];
        let mut first_deal = vec![Timestamp::MAX; n];
        for (di, d) in deal_list.iter().enumerate() {
            if d.outcome != DealOutcome::Completed {
                continue;
            }
            let (a, b) = (slot_ix[2 * di], slot_ix[2 * di + 1]);
            deals_completed[a as usize] += 1;
            deals_completed[b as usize] += 1;
            for x in [a as usize, b as usize] {
                first_deal[x] = first_deal[x].min(d.at);
            }
            cps.push((a, b));
            cps.push((b, a));
            for (side, (e, x)) in [(a, b), (b, a)].into_iter().enumerate() {
                if verdicts[di][side] != Some(Verdict::Negative) {
                    wit.push((e, (x, d.at)));
                }
            }
        }
        // Earliest witness time per (e, x).
        wit.sort_unstable_by_key(|(e, (x, t))| (*e, *x, *t));
        wit.dedup_by_key(|(e, (x, _))| (*e, *x));
        let (wit_row, wit) = csr(n, wit);
        cps.sort_unstable();
        cps.dedup();
        let (cp_row, cp) = csr(n, cps);

        let net = Net {
            keys,
            index,
            row,
            col,
            pos,
            neg,
            pos_recent,
            deals: deals_n,
            vouched,
            wit_row,
            wit,
            cp_row,
            cp,
            deals_completed,
            first_deal,
            positives,
            negatives,
            vouches_in,
        };
        TrustModel { params, now, net: Arc::new(net) }
    }

    pub fn params(&self) -> &TrustParams {
        &self.params
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Identities in the graph.
    pub fn len(&self) -> usize {
        self.net.n()
    }

    pub fn is_empty(&self) -> bool {
        self.net.n() == 0
    }

    /// Edges (ordered pairs with an opinion or a vouch).
    pub fn edge_count(&self) -> usize {
        self.net.col.len()
    }

    /// Computes `viewer`'s view, ignoring every edge from or to a `blocked` identity.
    pub fn view(&self, viewer: &PublicKey, blocked: &[PublicKey]) -> TrustView {
        let net = &*self.net;
        let p = &self.params;
        let n = net.n();
        let mut is_blocked = vec![false; n];
        for b in blocked {
            if let Some(&i) = net.index.get(b.as_bytes()) {
                is_blocked[i as usize] = true;
            }
        }
        let Some(v) = net.index.get(viewer.as_bytes()).map(|&i| i as usize).filter(|&i| !is_blocked[i]) else {
            return TrustView::empty(*viewer, self.now, Arc::clone(&self.net), is_blocked);
        };

        let established_at = self.establish(v, &is_blocked);
        let established: Vec<bool> = established_at.iter().map(Option::is_some).collect();
        // Young: first co-signed deal less than `establish_secs` ago. Sybils can backdate the
        // deals they sign among themselves, so this is a probation for fresh keys (newcomers,
        // whitewashers), not a Sybil defence; that is the flow and the per-weight score below.
        let young = |i: usize| net.first_deal[i].saturating_add(p.establish_secs) > self.now;

        // Probation, for young identities that are not established: trust out of them counts
        // `probation_out`, trust into them `probation_in`.
        let probation: Vec<bool> = (0..n).map(|i| i != v && !established[i] && young(i)).collect();
        let out: Vec<f64> = probation.iter().map(|&y| if y { p.probation_out } else { 1.0 }).collect();
        let into: Vec<f64> = probation.iter().map(|&y| if y { p.probation_in } else { 1.0 }).collect();
        // The net opinion weight each identity received (the divisor of the per-weight score), and
        // the positive weight decayed with the evidence half-life (the recent evidence; negatives
        // count in the distrust factor below).
        let mut received = vec![0.0f64; n];
        let mut recent = vec![0.0f64; n];
        for i in (0..n).filter(|&i| !is_blocked[i]) {
            for e in net.edges(i) {
                let j = net.col[e] as usize;
                received[j] += (net.pos[e] - p.negative * net.neg[e]).max(0.0);
                recent[j] += net.pos_recent[e];
            }
        }
        let per_weight = |t: &[f64], j: usize| t[j] / received[j].max(p.weight_floor);

        let (mut c, row_out) = self.local_trust(&out, &into, &is_blocked);
        let pre = self.pre_trust(v, &is_blocked);
        // With the relay, the first pass only sets each identity's relay factor, its corroborated
        // share and where the second pass starts: a looser stop is enough (the second pass stops
        // at `tolerance`).
        let first_stop = if p.relay_fraction > 0.0 { p.tolerance.max(RELAY_FIRST_PASS_TOLERANCE) } else { p.tolerance };
        // Corroboration (3.4): the first pass splits the trust by the first-hand branch it last came
        // through, and sets the share of each identity's trust that counts: what came through its
        // largest branch counts up to `branch_limit` times the rest. The viewer and the first-hand
        // identities keep their whole trust.
        let branches = self.branches(v, &pre);
        let (mut t, mut iterations, mut converged, counted) = match &branches {
            Some(lane) => {
                let (split, iterations, converged) = self.iterate_branches(&c, &row_out, &pre, lane, first_stop);
                let counted: Vec<f64> = split
                    .iter()
                    .enumerate()
                    .map(|(x, m)| {
                        if x == v || lane[x] != NOT_FIRST_HAND {
                            1.0
                        } else {
                            m.counted(p.branch_limit, p.uncorroborated)
                        }
                    })
                    .collect();
                (split.iter().map(Lanes::total).collect(), iterations, converged, Some(counted))
            }
            None => {
                let (t, iterations, converged) = self.iterate(&c, &row_out, &pre, &pre, first_stop);
                (t, iterations, converged, None)
            }
        };
        // The relay (3.4): a second pass in which identities far below the reference trust per
        // weight pass on only part of their trust, from where the first pass ended.
        if p.relay_fraction > 0.0 {
            let reference =
                weighted_median((0..n).filter(|&j| j != v && t[j] > 0.0).map(|j| (per_weight(&t, j), t[j])));
            if reference > 0.0 {
                let bar = p.relay_fraction * reference;
                let relay: Vec<f64> =
                    (0..n).map(|i| if i == v { out[i] } else { out[i] * (per_weight(&t, i) / bar).min(1.0) }).collect();
                let (c2, row_out2) = self.local_trust(&relay, &into, &is_blocked);
                let (t2, more, done) = self.iterate(&c2, &row_out2, &pre, &t, p.tolerance);
                (c, t, converged) = (c2, t2, done);
                iterations += more;
            }
        }
        let share = |j: usize| counted.as_ref().map_or(1.0, |c| c[j]);

        // Distrust: what trusted reporters said, positive against negative, each reporter's
        // reports normalised to one.
        let mut good = vec![0.0f64; n];
        let mut bad = vec![0.0f64; n];
        for i in 0..n {
            if is_blocked[i] || t[i] == 0.0 {
                continue;
            }
            let live = |e: &usize| !is_blocked[net.col[*e] as usize];
            let total: f64 = net.edges(i).filter(live).map(|e| net.pos[e] + net.neg[e]).sum();
            if total <= 0.0 {
                continue;
            }
            for e in net.edges(i).filter(live) {
                let j = net.col[e] as usize;
                good[j] += t[i] * net.pos[e] / total;
                bad[j] += t[i] * net.neg[e] / total;
            }
        }
        // The level: trust per weight (is x inside the honest region the viewer's trust reaches?)
        // with the distrust factor. It decides who counts as trusted (3.6), whatever their recent
        // activity.
        let level: Vec<f64> = (0..n)
            .map(|j| {
                if is_blocked[j] {
                    0.0
                } else {
                    let base = if j == v { t[j] } else { per_weight(&t, j) * share(j) };
                    if bad[j] > 0.0 { base * good[j] / (good[j] + p.distrust * bad[j]) } else { base }
                }
            })
            .collect();
        // The score: the level times the recent evidence, up to the cap (how much has x shown
        // lately?).
        let mut score: Vec<f64> = (0..n)
            .map(|j| {
                if j == v || p.evidence_cap <= 0.0 {
                    level[j]
                } else {
                    level[j] * recent[j].min(p.evidence_cap) / p.evidence_cap
                }
            })
            .collect();
        // The standing order: a young identity ranks below every other identity with a positive
        // score (a fresh key never outranks an older key the viewer has any trust in); young ones
        // keep their order among themselves. Scaling them all by one factor does that.
        let others_min =
            (0..n).filter(|&j| j != v && !young(j) && score[j] > 0.0).map(|j| score[j]).fold(f64::INFINITY, f64::min);
        let young_max = (0..n).filter(|&j| j != v && young(j)).map(|j| score[j]).fold(0.0, f64::max);
        if young_max > 0.0 {
            let factor = if others_min.is_finite() { (p.young_score * others_min / young_max).min(1.0) } else { 1.0 };
            for j in (0..n).filter(|&j| j != v && young(j)) {
                score[j] *= factor;
            }
        }

        TrustView::assemble(self, v, t, score, &level, established_at, is_blocked, c, iterations, converged)
    }

    /// Local trust `c_ij = out_i · in_j · s_ij / Σ_j s_ij` (blocked identities removed) and what
    /// each row hands out.
    fn local_trust(&self, out: &[f64], into: &[f64], is_blocked: &[bool]) -> (Vec<f64>, Vec<f64>) {
        let net = &*self.net;
        let p = &self.params;
        let n = net.n();
        let mut c = vec![0.0f64; net.col.len()];
        let mut row_out = vec![0.0f64; n];
        let w = |e: usize| (net.pos[e] - p.negative * net.neg[e]).max(0.0);
        for i in 0..n {
            if is_blocked[i] || out[i] == 0.0 {
                continue;
            }
            let total: f64 = net.edges(i).filter(|&e| !is_blocked[net.col[e] as usize]).map(w).sum();
            if total <= 0.0 {
                continue;
            }
            let mut sum = 0.0;
            for e in net.edges(i) {
                let j = net.col[e] as usize;
                if is_blocked[j] {
                    continue;
                }
                c[e] = out[i] * into[j] * w(e) / total;
                sum += c[e];
            }
            row_out[i] = sum;
        }
        (c, row_out)
    }

    /// Pre-trust: the viewer, and the viewer's own first-hand opinions (no probation factor).
    fn pre_trust(&self, v: usize, is_blocked: &[bool]) -> Vec<f64> {
        let net = &*self.net;
        let p = &self.params;
        let mut pre = vec![0.0f64; net.n()];
        let vw = |e: usize| (net.pos[e] - p.negative * net.neg[e]).max(0.0);
        let vtotal: f64 = net.edges(v).filter(|&e| !is_blocked[net.col[e] as usize]).map(vw).sum();
        if vtotal > 0.0 {
            pre[v] = p.viewer_seed;
            for e in net.edges(v) {
                let j = net.col[e] as usize;
                if !is_blocked[j] {
                    pre[j] += (1.0 - p.viewer_seed) * vw(e) / vtotal;
                }
            }
        } else {
            pre[v] = 1.0;
        }
        pre
    }

    /// The lane of each identity in the branch-labelled pass: the viewer's first-hand identities
    /// (those with pre-trust, the viewer apart), by pre-trust then index, get lanes `0..` up to
    /// `BRANCH_LANES - 2`, the rest of them the last lane; every other identity
    /// [`NOT_FIRST_HAND`]. `None` when corroboration is off or the viewer has fewer than two
    /// first-hand identities (one branch corroborates nothing).
    fn branches(&self, v: usize, pre: &[f64]) -> Option<Vec<u8>> {
        if self.params.branch_limit <= 0.0 {
            return None;
        }
        let mut first: Vec<usize> = (0..pre.len()).filter(|&j| j != v && pre[j] > 0.0).collect();
        if first.len() < 2 {
            return None;
        }
        first.sort_by(|&a, &b| pre[b].total_cmp(&pre[a]).then(a.cmp(&b)));
        let mut lane = vec![NOT_FIRST_HAND; pre.len()];
        for (k, &j) in first.iter().enumerate() {
            lane[j] = k.min(BRANCH_LANES - 1) as u8;
        }
        Some(lane)
    }

    /// The same power iteration as [`Self::iterate`], with each identity's trust split into
    /// [`Lanes`]: trust that enters a first-hand identity moves to that identity's lane, trust
    /// anywhere else keeps its lanes, pre-trust enters in the lane of where it lands (the viewer's
    /// own in the last lane; it moves on into first-hand lanes at the next step). The lanes sum to
    /// `iterate`'s vector. Starts from `pre`, so that the split is that of the walks' history at
    /// every step (a split guessed at the start would be forgotten only as fast as the damping
    /// sends trust back); stops when the L1 change over all lanes is below `stop`.
    fn iterate_branches(
        &self,
        c: &[f64],
        row_out: &[f64],
        pre: &[f64],
        lane: &[u8],
        stop: f64,
    ) -> (Vec<Lanes>, u32, bool) {
        let net = &*self.net;
        let p = &self.params;
        let n = net.n();
        let a = p.damping;
        let last = BRANCH_LANES - 1;
        let lane_of = |j: usize| if lane[j] == NOT_FIRST_HAND { last } else { lane[j] as usize };
        // The positive entries of `c`, split by target: into identities that are not first-hand
        // (lanes carried along) and into first-hand ones (everything moves to their lane).
        let (start, carry) = self.positive_entries(c, |j| lane[j] == NOT_FIRST_HAND);
        let (start_in, into_first) = self.positive_entries(c, |j| lane[j] != NOT_FIRST_HAND);
        let mut m = vec![Lanes::default(); n];
        for (j, &x) in pre.iter().enumerate() {
            m[j].0[lane_of(j)] = x;
        }
        let mut next = vec![Lanes::default(); n];
        let mut iterations = 0;
        let mut converged = false;
        while iterations < p.max_iterations {
            iterations += 1;
            next.iter_mut().for_each(|x| *x = Lanes::default());
            let mut leak = 0.0;
            for i in 0..n {
                let mi = m[i];
                let ti = mi.total();
                if ti == 0.0 {
                    continue;
                }
                for &(j, cij) in &carry[start[i]..start[i + 1]] {
                    let nj = &mut next[j as usize].0;
                    for (x, y) in nj.iter_mut().zip(&mi.0) {
                        *x += y * cij;
                    }
                }
                for &(j, cij) in &into_first[start_in[i]..start_in[i + 1]] {
                    next[j as usize].0[lane[j as usize] as usize] += ti * cij;
                }
                leak += ti * (1.0 - row_out[i]);
            }
            let back = a + (1.0 - a) * leak;
            let mut diff = 0.0;
            for j in 0..n {
                let nj = &mut next[j].0;
                for x in nj.iter_mut() {
                    *x *= 1.0 - a;
                }
                nj[lane_of(j)] += back * pre[j];
                diff += nj.iter().zip(&m[j].0).map(|(x, y)| (x - y).abs()).sum::<f64>();
            }
            std::mem::swap(&mut m, &mut next);
            if diff < stop {
                converged = true;
                break;
            }
        }
        (m, iterations, converged)
    }

    /// The positive entries of `c` whose target passes `keep`, packed by row in the order of the
    /// edges (so every sum over them runs in the same order): row `i` is
    /// `entries[start[i]..start[i + 1]]`, each entry `(target, c)`.
    fn positive_entries(&self, c: &[f64], keep: impl Fn(usize) -> bool) -> (Vec<usize>, Vec<(u32, f64)>) {
        let net = &*self.net;
        let mut start = Vec::with_capacity(net.n() + 1);
        let mut entries = Vec::with_capacity(c.len());
        start.push(0);
        for i in 0..net.n() {
            for e in net.edges(i).filter(|&e| c[e] > 0.0 && keep(net.col[e] as usize)) {
                entries.push((net.col[e], c[e]));
            }
            start.push(entries.len());
        }
        (start, entries)
    }

    /// Power iteration: `t <- (1-a) C^T t + (a + (1-a) leak) p`, from `start_from` (`p`, or where
    /// the first pass ended).
    fn iterate(&self, c: &[f64], row_out: &[f64], pre: &[f64], start_from: &[f64], stop: f64) -> (Vec<f64>, u32, bool) {
        let net = &*self.net;
        let p = &self.params;
        let n = net.n();
        let a = p.damping;
        let (start, entries) = self.positive_entries(c, |_| true);
        let mut t = start_from.to_vec();
        let mut next = vec![0.0f64; n];
        let mut iterations = 0;
        let mut converged = false;
        while iterations < p.max_iterations {
            iterations += 1;
            next.iter_mut().for_each(|x| *x = 0.0);
            let mut leak = 0.0;
            for i in 0..n {
                let ti = t[i];
                if ti == 0.0 {
                    continue;
                }
                for &(j, cij) in &entries[start[i]..start[i + 1]] {
                    next[j as usize] += ti * cij;
                }
                leak += ti * (1.0 - row_out[i]);
            }
            let back = a + (1.0 - a) * leak;
            let mut diff = 0.0;
            for j in 0..n {
                let x = (1.0 - a) * next[j] + back * pre[j];
                diff += (x - t[j]).abs();
                next[j] = x;
            }
            std::mem::swap(&mut t, &mut next);
            if diff < stop {
                converged = true;
                break;
            }
        }
        (t, iterations, converged)
    }

    /// When each identity became established in `v`'s view (`None`: not established): a
    /// Dijkstra-like fixpoint seeded on the viewer. An identity x is established at
    /// `max(first + establish_secs, kth)`, where each established counterparty e witnesses x at
    /// the time of their first completed deal in which e said nothing negative of x, `first` is
    /// the earliest witness time and `kth` the k-th earliest (k = `establish_counterparties`); the
    /// viewer's witness counts k times (first-hand experience). Times come only from agreements
    /// an established counterparty co-signed, never from a record x signed alone or with
    /// identities that are not established. The least fixpoint is unique, so the order in which
    /// ties are processed does not change the result.
    fn establish(&self, v: usize, is_blocked: &[bool]) -> Vec<Option<Timestamp>> {
        let net = &*self.net;
        let n = net.n();
        let k = self.params.establish_counterparties.max(1);
        let mut done: Vec<Option<Timestamp>> = vec![None; n];
        let mut witnesses: Vec<Vec<Timestamp>> = vec![Vec::new(); n];
        let mut tentative: Vec<Timestamp> = vec![Timestamp::MAX; n];
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((0, v as u32)));
        tentative[v] = 0;
        while let Some(Reverse((at, e))) = heap.pop() {
            let e = e as usize;
            if done[e].is_some() || at != tentative[e] {
                continue;
            }
            done[e] = Some(at);
            let times = if e == v { k } else { 1 };
            for &(x, t) in &net.wit[net.wit_row[e]..net.wit_row[e + 1]] {
                let x = x as usize;
                if done[x].is_some() || is_blocked[x] {
                    continue;
                }
                let w = &mut witnesses[x];
                for _ in 0..times {
                    // The witnessed time is the co-signed agreement's, as is: clamping it to the
                    // witness's own establishment (so an established Sybil could not backdate its
                    // friends) stops honest neighbourhoods from establishing one another at all,
                    // since most real deals predate the partner's establishment (see
                    // docs/reputation.md, "Establishment").
                    let cand = t;
                    let pos = w.partition_point(|&y| y <= cand);
                    if pos < k {
                        w.insert(pos, cand);
                        w.truncate(k);
                    }
                }
                if w.len() >= k {
                    let est = (w[0].saturating_add(self.params.establish_secs)).max(w[k - 1]);
                    if est <= self.now && est < tentative[x] {
                        tentative[x] = est;
                        heap.push(Reverse((est, x as u32)));
                    }
                }
            }
        }
        done
    }
}

/// The lane of an identity that is not one of the viewer's first-hand identities.
const NOT_FIRST_HAND: u8 = u8::MAX;

/// One viewer's trust in everyone in the graph.
#[derive(Debug, Clone)]
pub struct TrustView {
    pub(crate) viewer: PublicKey,
    pub(crate) viewer_index: Option<usize>,
    now: Timestamp,
    pub(crate) net: Arc<Net>,
    /// EigenTrust's vector.
    trust: Vec<f64>,
    score: Vec<f64>,
    rank: Vec<Option<u32>>,
    established_at: Vec<Option<Timestamp>>,
    trusted: Vec<bool>,
    blocked: Vec<bool>,
    /// Effective local trust per edge (with the probation factors), for explanations.
    pub(crate) c: Vec<f64>,
    stats: ViewStats,
}

impl TrustView {
    fn empty(viewer: PublicKey, now: Timestamp, net: Arc<Net>, blocked: Vec<bool>) -> Self {
        let n = net.n();
        let edges = net.col.len();
        TrustView {
            viewer,
            viewer_index: None,
            now,
            net,
            trust: vec![0.0; n],
            score: vec![0.0; n],
            rank: vec![None; n],
            established_at: vec![None; n],
            trusted: vec![false; n],
            blocked,
            c: vec![0.0; edges],
            stats: ViewStats { identities: n as u32, established: 0, iterations: 0, converged: true, self_trust: 1.0 },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        model: &TrustModel,
        v: usize,
        trust: Vec<f64>,
        score: Vec<f64>,
        level: &[f64],
        established_at: Vec<Option<Timestamp>>,
        blocked: Vec<bool>,
        c: Vec<f64>,
        iterations: u32,
        converged: bool,
    ) -> Self {
        let net = Arc::clone(&model.net);
        let n = net.n();
        let others = |j: &usize| *j != v && !blocked[*j];
        let est: Vec<usize> = (0..n).filter(others).filter(|&j| established_at[j].is_some()).collect();
        // Trusted: a real share of the trust per weight among the established, whatever their
        // recent activity (an established neighbour who has not dealt lately is still trusted).
        let mean = if est.is_empty() { 0.0 } else { est.iter().map(|&j| level[j]).sum::<f64>() / est.len() as f64 };
        let threshold = model.params.trusted_fraction * mean;
        let mut trusted = vec![false; n];
        trusted[v] = true;
        for &j in &est {
            trusted[j] = level[j] > 0.0 && level[j] >= threshold;
        }
        let mut order: Vec<usize> = (0..n).filter(others).filter(|&j| score[j] > 0.0).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(net.keys[a].as_bytes().cmp(net.keys[b].as_bytes())));
        let mut rank = vec![None; n];
        for (r, &j) in order.iter().enumerate() {
            rank[j] = Some(r as u32 + 1);
        }
        let stats = ViewStats {
            identities: n as u32,
            established: established_at.iter().filter(|e| e.is_some()).count() as u32,
            iterations,
            converged,
            self_trust: trust[v],
        };
        TrustView {
            viewer: net.keys[v],
            viewer_index: Some(v),
            now: model.now,
            net,
            trust,
            score,
            rank,
            established_at,
            trusted,
            blocked,
            c,
            stats,
        }
    }

    pub fn viewer(&self) -> &PublicKey {
        &self.viewer
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn stats(&self) -> &ViewStats {
        &self.stats
    }

    pub(crate) fn index_of(&self, who: &PublicKey) -> Option<usize> {
        self.net.index.get(who.as_bytes()).map(|&i| i as usize)
    }

    /// The final score of `who` (0 for identities outside the graph).
    pub fn score(&self, who: &PublicKey) -> f64 {
        self.index_of(who).map_or(0.0, |i| self.score[i])
    }

    /// EigenTrust's value for `who`, before the distrust factor.
    pub fn eigentrust(&self, who: &PublicKey) -> f64 {
        self.index_of(who).map_or(0.0, |i| self.trust[i])
    }

    /// Every identity of the graph with its final score, in key order.
    pub fn scores(&self) -> impl Iterator<Item = (&PublicKey, f64)> {
        self.net.keys.iter().zip(self.score.iter().copied())
    }

    /// Whether the viewer trusts `who` (see [`Evidence::trusted_counterparties`]).
    pub fn trusts(&self, who: &PublicKey) -> bool {
        self.index_of(who).is_some_and(|i| self.trusted[i])
    }

    /// `who` as the viewer sees them. An identity outside the graph is `Unknown` with no evidence.
    pub fn person(&self, who: &PublicKey) -> PersonTrust {
        match self.index_of(who) {
            Some(i) => self.person_at(i),
            None => PersonTrust {
                identity: *who,
                score: 0.0,
                rank: None,
                standing: if who == &self.viewer { Standing::Viewer } else { Standing::Unknown },
                evidence: Evidence::default(),
            },
        }
    }

    fn person_at(&self, i: usize) -> PersonTrust {
        let net = &*self.net;
        let cps = &net.cp[net.cp_row[i]..net.cp_row[i + 1]];
        let trusted_cp = cps.iter().filter(|&&j| self.trusted[j as usize]).count() as u32;
        let evidence = Evidence {
            deals_completed: net.deals_completed[i],
            counterparties: cps.len() as u32,
            trusted_counterparties: trusted_cp,
            positives: net.positives[i],
            negatives: net.negatives[i],
            vouches_received: net.vouches_in[i],
            established_since: if Some(i) == self.viewer_index { None } else { self.established_at[i] },
        };
        let standing = if Some(i) == self.viewer_index {
            Standing::Viewer
        } else if self.blocked[i] {
            Standing::Blocked
        } else if trusted_cp == 0 {
            Standing::Unknown
        } else if self.established_at[i].is_some() {
            Standing::Established
        } else {
            Standing::Probation
        };
        PersonTrust { identity: net.keys[i], score: self.score[i], rank: self.rank[i], standing, evidence }
    }

    /// Everyone with a score above zero but the viewer, best first (score, then key bytes).
    pub fn ranked(&self) -> Vec<PersonTrust> {
        let mut order: Vec<(u32, usize)> =
            self.rank.iter().enumerate().filter_map(|(i, r)| r.map(|r| (r, i))).collect();
        order.sort_unstable();
        order.into_iter().map(|(_, i)| self.person_at(i)).collect()
    }

    /// The `n` best-ranked identities.
    pub fn top(&self, n: usize) -> Vec<PersonTrust> {
        let mut r = self.ranked();
        r.truncate(n);
        r
    }
}

#[cfg(test)]
impl TrustModel {
    /// The (positive, negative) weights of the edge `from -> to`, for tests.
    pub(crate) fn pair_weight(&self, from: &PublicKey, to: &PublicKey) -> Option<(f64, f64)> {
        let net = &*self.net;
        let i = *net.index.get(from.as_bytes())? as usize;
        let j = *net.index.get(to.as_bytes())?;
        net.edges(i).find(|&e| net.col[e] == j).map(|e| (net.pos[e], net.neg[e]))
    }
}

/// The weighted median of `(value, weight)` pairs: the smallest value at which the weights of the
/// values up to it reach half the total (0 when there are none). Ties in value are kept in their
/// input order, which is the identities' index order, so the result is deterministic.
fn weighted_median(items: impl Iterator<Item = (f64, f64)>) -> f64 {
    let mut items: Vec<(f64, f64)> = items.collect();
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let half = items.iter().map(|x| x.1).sum::<f64>() / 2.0;
    let mut acc = 0.0;
    for (value, weight) in items {
        acc += weight;
        if acc >= half {
            return value;
        }
    }
    0.0
}

#[cfg(test)]
mod lane_tests {
    use super::{BRANCH_LANES, Lanes};

    fn lanes(values: &[(usize, f64)]) -> Lanes {
        let mut l = Lanes::default();
        for &(i, x) in values {
            l.0[i] = x;
        }
        l
    }

    #[test]
    fn the_largest_branch_counts_up_to_the_limit_times_the_others_and_the_excess_at_its_weight() {
        // Even branches: nothing is cut.
        assert_eq!(lanes(&[(0, 0.5), (1, 0.5)]).counted(1.0, 0.02), 1.0);
        // 0.6 against 0.4: an excess of 0.2 of 1.0 counts at 0.02.
        let share = lanes(&[(0, 0.6), (1, 0.4)]).counted(1.0, 0.02);
        assert!((share - (1.0 - 0.98 * 0.2)).abs() < 1e-12, "{share}");
        // One branch only: all of it is excess.
        let share = lanes(&[(3, 0.7)]).counted(1.0, 0.02);
        assert!((share - 0.02).abs() < 1e-12, "{share}");
        // A higher limit lets more through.
        assert_eq!(lanes(&[(0, 0.6), (1, 0.4)]).counted(2.0, 0.02), 1.0);
        // The shared lane of the small branches never counts as one branch.
        assert_eq!(lanes(&[(BRANCH_LANES - 1, 0.9), (0, 0.1)]).counted(1.0, 0.02), 1.0);
        // No trust: nothing to cut.
        assert_eq!(Lanes::default().counted(1.0, 0.02), 1.0);
    }
}
