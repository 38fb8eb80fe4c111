//! Deals between two people: the direct protocol `/troc/deal/1` ([`DealRequest`], [`DealResponse`]),
//! the deal service that delivers and answers it ([`service`]: outbox and retries, automatic
//! counter-signatures, blind-review reveals, reminders), the actions the API calls on a
//! [`NodeHandle`](crate::NodeHandle) ([`actions`]), and a deal's state derived from its records
//! ([`state`]).
//!
//! Proposals and the cancellations that decline or withdraw them are private: they travel only here,
//! between the two parties, and are stored only on their two nodes. Every public deal record also
//! travels here (so an offline party gets it when it is back) and by gossip and catch-up like any
//! public record.

pub mod actions;
pub mod service;
pub mod state;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use troc_protocol::RecordError;

use crate::node::NodeError;
use crate::store::StoreError;

/// The protocol name.
pub const PROTOCOL: &str = "/troc/deal/1";
/// Largest request: one record (at most 16 KiB) as CBOR bytes, with framing.
pub const MAX_DEAL_REQUEST: u64 = 40 * 1024;
/// Largest response.
pub const MAX_DEAL_RESPONSE: u64 = 4 * 1024;
/// Direct deal requests handled per peer: rate and burst.
pub const DEAL_RATE: (f64, f64) = (5.0, 50.0);
/// Inbound deal requests waiting for the deal service, at most.
pub const MAX_DEAL_INBOUND: usize = 64;

/// One direct message. `msg` correlates it with the sender's outbox entry (the answer repeats it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealRequest {
    pub msg: u64,
    pub body: DealMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DealMessage {
    /// A complete signed record for the receiver (a proposal, a cancellation, a deal step, an
    /// agreement or extension both signed, a review commitment or review).
    Record {
        #[serde(with = "serde_bytes_compat")]
        bytes: Vec<u8>,
    },
    /// A partially signed agreement or extension, for the receiver to countersign.
    Cosign {
        #[serde(with = "serde_bytes_compat")]
        bytes: Vec<u8>,
    },
}

/// The answer to a [`DealRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealResponse {
    pub msg: u64,
    pub answer: DealAnswer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DealAnswer {
    /// The record is stored (or was already).
    Stored,
    /// The agreement matched our proposal: here is our signature (64 bytes).
    Countersigned {
        #[serde(with = "serde_bytes_compat")]
        signature: Vec<u8>,
    },
    /// Kept for the person to answer (an extension request).
    Pending,
    /// Refused, with a stable code. [`is_transient`] codes are worth retrying later.
    Refused { code: String, message: String },
}

/// Whether a refusal may go away by itself (the record the message needs is on its way, the
/// receiver is busy), so the message stays in the outbox.
pub fn is_transient(code: &str) -> bool {
    matches!(code, "unknown_deal" | "deal_not_ended" | "busy" | "queue_full" | "store_error" | "deal_rate_limited")
}

/// CBOR byte strings for `Vec<u8>` (serde's default is an array of numbers, up to twice the size).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    if out.len() >= super::MAX_DEAL_REQUEST as usize {
                        return Err(serde::de::Error::custom("too many bytes"));
                    }
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// What can go wrong with a deal action.
#[derive(Debug, Error)]
pub enum DealError {
    #[error("no such deal, proposal or request: {0}")]
    NotFound(String),
    #[error("you are not a party of this deal")]
    NotAParty,
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is blocked on this node")]
    Blocked(String),
    #[error("refused ({code}): {reason}")]
    Refused { code: String, reason: String },
    #[error("invalid record")]
    Record(#[from] RecordError),
    #[error("store error")]
    Store(#[from] StoreError),
    #[error("node error")]
    Node(#[from] NodeError),
}

impl DealError {
    /// A stable code for the API.
    pub fn code(&self) -> &str {
        match self {
            DealError::NotFound(_) => "not_found",
            DealError::NotAParty => "not_a_party",
            DealError::Invalid(_) => "invalid_request",
            DealError::Blocked(_) => "blocked",
            DealError::Refused { code, .. } => code,
            DealError::Record(e) => e.code(),
            DealError::Store(StoreError::OutboxFull) => "outbox_full",
            DealError::Store(_) => "store_error",
            DealError::Node(_) => "node_error",
        }
    }
}
