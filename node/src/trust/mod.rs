//! Reputation: each node's own view of whom to trust, computed from signed records.
//!
//! A pure, deterministic engine (no I/O, no clock: it takes `now`): the same records, viewer,
//! block list and `now` give the same result, whatever the order the records came in.
//!
//! - [`facts`]: the rules between records (which deals, reviews, signals and vouches count), turning
//!   verified records into a [`TrustGraph`].
//! - [`engine`]: personalised EigenTrust with diminishing returns, time decay, probation for young
//!   identities and a distrust term, scored as trust per weight times recent evidence:
//!   [`TrustModel`] (prepared once per graph and `now`) and [`TrustView`] (one viewer's scores,
//!   ranks, standings and evidence).
//! - [`explain`]: the strongest paths of trust from the viewer to someone.
//! - [`sim`]: the seeded Sybil simulation that checks the engine on real signed records
//!   (`cargo run --release -p troc-node --example trust_sim`).
//!
//! ```no_run
//! # use troc_node::trust::*;
//! # fn demo(records: &[troc_protocol::SignedRecord], me: &troc_protocol::PublicKey, them: &troc_protocol::PublicKey) {
//! let now = 1_780_000_000;
//! let graph = TrustGraph::from_records(records, now);
//! let model = TrustModel::new(&graph, now, TrustParams::default());
//! let view = model.view(me, &[]);
//! let person = view.person(them); // score, rank, standing, evidence
//! let why = view.explain(them, 3); // the strongest paths of trust
//! # }
//! ```
//!
//! The model, its parameters and the simulation's figures are in `docs/reputation.md`.

pub mod engine;
pub mod explain;
pub mod facts;
#[doc(hidden)]
pub mod sim;

#[cfg(test)]
mod tests;

pub use engine::{Evidence, PersonTrust, Standing, TrustModel, TrustParams, TrustView, ViewStats};
pub use explain::{Explanation, MAX_PATH_HOPS, PathHop, TrustPath};
pub use facts::{
    Deal, DealOutcome, FactError, Opinion, OpinionSource, REVIEW_WINDOW_SECS, RecordFacts, TrustGraph, Verdict,
    VouchEdge,
};

use troc_protocol::{PublicKey, SignedRecord, Timestamp};

/// One viewer's trust from records, in one call (builds the graph and the model, then the view).
/// To compute several viewers' views, or to refresh often, keep the [`TrustModel`] instead.
pub fn compute<'a>(
    records: impl IntoIterator<Item = &'a SignedRecord>,
    viewer: &PublicKey,
    blocked: &[PublicKey],
    now: Timestamp,
) -> TrustView {
    let graph = TrustGraph::from_records(records, now);
    TrustModel::new(&graph, now, TrustParams::default()).view(viewer, blocked)
}
