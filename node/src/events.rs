//! What a node tells its subscribers (the API's event stream, the CLI's `watch`, tests).
//!
//! Events go out on a bounded broadcast channel: a subscriber that falls behind loses the oldest
//! events and is told how many (`RecvError::Lagged`), it never slows the node down.

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use troc_protocol::{PublicKey, RecordId, RecordType, SignedRecord};

use crate::metrics::Source;

/// Capacity of the event channel.
pub const EVENT_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A record was verified and stored (new, or replacing an older revision).
    Stored {
        id: RecordId,
        record_type: RecordType,
        author: PublicKey,
        /// `global`, `community/<slug>`, or none for private records.
        scope: Option<String>,
        source: Source,
        replaced: Option<RecordId>,
    },
    Listening {
        #[serde(serialize_with = "crate::events::display")]
        address: Multiaddr,
    },
    PeerConnected {
        #[serde(serialize_with = "crate::events::display")]
        peer: PeerId,
    },
    PeerDisconnected {
        #[serde(serialize_with = "crate::events::display")]
        peer: PeerId,
    },
    /// A large catch-up is fetching records: `fetched` of about `total` (one event per fetched chunk).
    SyncProgress {
        #[serde(serialize_with = "crate::events::display")]
        peer: PeerId,
        scope: String,
        fetched: usize,
        total: usize,
    },
    /// A catch-up session with a peer finished.
    SyncDone {
        #[serde(serialize_with = "crate::events::display")]
        peer: PeerId,
        scope: String,
        fetched: usize,
        pushed: usize,
    },
    /// Something happened in a deal of ours: `kind` is `deal_<record type>` for a stored record
    /// (`deal_proposal`, `deal_agreement`, `deal_handover` ...), or `deal_extension_requested`,
    /// `deal_review_revealed`, `deal_due_soon`, `deal_overdue`, `deal_message_refused`.
    Deal {
        kind: &'static str,
        /// The deal: its agreement, or the proposal.
        deal: RecordId,
        /// The other party.
        peer: PublicKey,
        /// The record concerned, if any.
        record: Option<RecordId>,
    },
    /// A gossip message was refused; the sender was penalised.
    Rejected {
        #[serde(serialize_with = "crate::events::display")]
        peer: PeerId,
        code: &'static str,
    },
}

impl NodeEvent {
    pub(crate) fn stored(
        record: &SignedRecord,
        scope: Option<String>,
        source: Source,
        replaced: Option<RecordId>,
    ) -> Self {
        NodeEvent::Stored {
            id: record.id(),
            record_type: record.record_type(),
            author: *record.author(),
            scope,
            source,
            replaced,
        }
    }
}

pub(crate) fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}
