//! The troc node: everything a person's node does with the network and the disk.
//!
//! [`node::Node::spawn`] starts a node and returns a [`node::NodeHandle`]. Inside: the swarm task
//! ([`node`], [`network`]), the writer thread ([`ingest`]) in front of the sled [`store`], the
//! catch-up task ([`catchup`], [`sync`]), the reputation service ([`reputation`], on the [`trust`]
//! engine), bounds ([`limits`], [`config`]) and [`metrics`]. The
//! identity on disk is in [`keystore`]. See `ARCHITECTURE.md` for the map.

pub mod alloc;
pub mod api;
pub mod catchup;
pub mod config;
pub mod deals;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod keystore;
pub mod limits;
pub mod link;
pub mod metrics;
pub mod network;
pub mod node;
pub mod paths;
pub mod reputation;
pub mod search;
pub mod store;
pub mod sync;
pub mod topics;
pub mod trust;

pub use config::NodeConfig;

/// The hash map of the in-memory indexes: std's `HashMap` with foldhash, seeded per map like std's
/// own (keys come from peers, so they must not be able to aim at one bucket), and several times
/// cheaper than SipHash on 32-byte ids: every record ingested touches a few of these maps.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set of the same kind (see [`FastMap`]).
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
pub use node::{Node, NodeError, NodeHandle};

/// Unix time now, in seconds (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
