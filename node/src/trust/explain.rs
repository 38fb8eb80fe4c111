//! Why the viewer trusts someone: the strongest paths of trust from the viewer to a target.
//!
//! A path's strength is the product of the effective local trust `c` (probation factors included)
//! along it, the quantity EigenTrust propagates. The best path of at most `h` hops to every identity
//! is found by `h` rounds of Bellman-Ford relaxation on the product (the same as a hop-bounded
//! shortest path on `-log c`; products of values ≤ 1 never gain from a cycle, and only strict
//! improvements are taken, so paths are simple). The candidates are then the best path to each
//! identity that trusts the target directly, extended by that last edge: the top ones by strength
//! are distinct paths, each through a different last person. Ties are broken by key bytes.

use serde::Serialize;
use troc_protocol::PublicKey;

use super::engine::TrustView;

/// Paths at most this long (hops).
pub const MAX_PATH_HOPS: usize = 4;

/// One hop of a path: `from` trusts `to` this much, on this evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathHop {
    pub from: PublicKey,
    pub to: PublicKey,
    /// Effective local trust `c` of this edge (the share of `from`'s trust that goes to `to`).
    pub weight: f64,
    /// Deals in which `from` expressed an opinion of `to`.
    pub deals: u32,
    /// Whether `from` vouches for `to`.
    pub vouched: bool,
}

/// One path from the viewer to the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustPath {
    /// The product of the hops' weights.
    pub strength: f64,
    pub hops: Vec<PathHop>,
}

/// The strongest paths from the viewer to the target, strongest first (possibly none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub viewer: PublicKey,
    pub target: PublicKey,
    pub paths: Vec<TrustPath>,
}

impl TrustView {
    /// The `max_paths` strongest paths of at most [`MAX_PATH_HOPS`] hops from the viewer to
    /// `target`, each through a different last person.
    pub fn explain(&self, target: &PublicKey, max_paths: usize) -> Explanation {
        let mut out = Explanation { viewer: self.viewer, target: *target, paths: Vec::new() };
        let (Some(v), Some(tg)) = (self.viewer_index, self.index_of(target)) else { return out };
        if v == tg || max_paths == 0 {
            return out;
        }
        let net = &*self.net;
        let n = net.n();
        // best[h][x]: strongest path of at most h hops from v to x, not through the target;
        // pred[h][x]: (previous identity, its layer) for layer h's path, or None if carried over.
        let layers = MAX_PATH_HOPS - 1;
        let mut best = vec![vec![0.0f64; n]; layers + 1];
        let mut pred: Vec<Vec<Option<(usize, usize)>>> = vec![vec![None; n]; layers + 1];
        best[0][v] = 1.0;
        for h in 1..=layers {
            let (done, rest) = best.split_at_mut(h);
            let prev = &done[h - 1];
            let cur = &mut rest[0];
            cur.copy_from_slice(prev);
            for (i, &from) in prev.iter().enumerate() {
                if from == 0.0 || i == tg {
                    continue;
                }
                for e in net.edges(i) {
                    let j = net.col[e] as usize;
                    let s = from * self.c[e];
                    if j != tg && j != v && s > cur[j] {
                        cur[j] = s;
                        pred[h][j] = Some((i, h - 1));
                    }
                }
            }
        }
        let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
        for (i, &b) in best[layers].iter().enumerate() {
            if b == 0.0 || i == tg {
                continue;
            }
            for e in net.edges(i) {
                if net.col[e] as usize == tg && self.c[e] > 0.0 {
                    candidates.push((b * self.c[e], i, e));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(net.keys[a.1].as_bytes().cmp(net.keys[b.1].as_bytes())));
        for (strength, last, edge) in candidates.into_iter().take(max_paths) {
            let mut nodes = vec![last];
            let (mut x, mut h) = (last, layers);
            while x != v {
                match pred[h][x] {
                    Some((p, ph)) => {
                        nodes.push(p);
                        x = p;
                        h = ph;
                    }
                    None if h > 0 => h -= 1,
                    None => break,
                }
            }
            nodes.reverse();
            let mut hops = Vec::with_capacity(nodes.len());
            for w in nodes.windows(2) {
                if let Some(e) = net.edges(w[0]).find(|&e| net.col[e] as usize == w[1]) {
                    hops.push(self.hop(w[0], w[1], e));
                }
            }
            hops.push(self.hop(last, tg, edge));
            out.paths.push(TrustPath { strength, hops });
        }
        out
    }

    fn hop(&self, from: usize, to: usize, e: usize) -> PathHop {
        let net = &*self.net;
        PathHop {
            from: net.keys[from],
            to: net.keys[to],
            weight: self.c[e],
            deals: net.deals[e],
            vouched: net.vouched[e],
        }
    }
}
