//! The troc node: everything a person's node does with the network and the disk.
//!
//! So far: [`keystore`], the identity on disk. The libp2p swarm, the sled store, catch-up,
//! reputation and the local API arrive with their issues (see `ARCHITECTURE.md`).

pub mod keystore;
