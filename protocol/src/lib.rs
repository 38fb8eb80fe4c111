//! troc's records: the one thing every troc peer speaks.
//!
//! A record is a header (format version, type, author key, creation time) and a typed body, encoded
//! in a fixed field order ([`codec`]), signed by its author over a per-type domain prefix and those
//! exact bytes, and named by the SHA-256 of what was signed. `docs/protocol.md` specifies the bytes;
//! `docs/test-vectors.json` pins them.
//!
//! This crate does no I/O: no network, no disk, no clock. Functions that need the time take `now`.
//!
//! ```
//! use troc_protocol::*;
//!
//! let alice = Identity::from_seed(&[1u8; 32]);
//! let profile = Profile {
//!     name: "Alice".into(),
//!     community: "north-end".into(),
//!     area: "u09tv".into(),
//!     about: String::new(),
//!     contact: String::new(),
//! };
//! let record = Signed::sign(&alice, 1_700_000_000, profile).unwrap();
//! // Anyone can check the bytes on their own:
//! let checked = SignedRecord::from_bytes(record.bytes(), 1_700_000_000).unwrap();
//! assert_eq!(checked.id(), record.id());
//! ```

pub mod body;
pub mod codec;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod geohash;
pub mod keys;
pub mod limits;
pub mod signed;
pub mod types;

#[cfg(test)]
mod tests;

pub use body::{
    Acknowledgement, Agreement, Body, Cancellation, Completion, Extension, FORMAT_VERSION, FacetRating, Handover,
    Header, Listing, Profile, Proposal, RecordBody, RecordType, Return, Review, ReviewCommitment, Revocation, Terms,
    Vouch, Withdrawal,
};
pub use error::RecordError;
pub use keys::{EntropyError, Identity, KeyParseError, PublicKey, random_bytes};
pub use libp2p_identity::PeerId;
pub use signed::{
    PartiallySigned, RecordJson, Signed, SignedRecord, Unverified, decode, id_of_bytes, signed_message, verify_batch,
};
pub use types::{
    CancelReason, Category, Condition, Currency, Facet, Kind, ListingKey, Money, Nonce, Rating, RecordId, Timestamp,
    UnknownName,
};
