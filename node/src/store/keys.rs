//! The byte layout of every sled key and value the store writes (schema 2), and the record facts
//! the apply rules and the in-memory indexes derive from a record (scope, expiry).
//!
//! Every integer is big-endian, so that the lexicographic order sled keeps is the numeric order: the
//! `log` tree, keyed by a sequence number, is in the order records were stored, and every new record
//! goes to its right edge (sled then writes one hot leaf instead of a random one per record, which
//! is what keeps writes fast when the store outgrows sled's cache).

use troc_protocol::limits::MAX_LISTING_LIFETIME_SECS;
use troc_protocol::{Body, CancelReason, Header, RecordId, Timestamp};

use super::Scope;

/// One day, in seconds.
pub(super) const DAY: u64 = 24 * 3600;

/// How long a withdrawal is kept (and synced) after it was created: by then every revision it
/// refuses that was created before it has expired, so it has nothing left to refuse.
pub(super) const WITHDRAWAL_RETENTION_SECS: u64 = MAX_LISTING_LIFETIME_SECS + DAY;

/// A refused-id marker that has no natural expiry but is only an optimisation (a superseded profile:
/// while the newer profile is stored, the old one is refused as `OlderRevision` anyway) is kept this
/// long after it was made.
pub(super) const SUPERSEDED_MARKER_SECS: u64 = MAX_LISTING_LIFETIME_SECS + DAY;

/// Marker expiry meaning "never" (revoked ids: the revocation that refuses them is kept for good).
pub(super) const NEVER: u64 = u64::MAX;

// ---------------------------------------------------------------------------------------------
// meta tree: fixed ASCII keys.

/// `meta["schema_version"]` = u32 BE.
pub(super) const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// `meta["clean_shutdown"]` = `[1]`, present only between `close` and the next write or `open`.
pub(super) const META_CLEAN_SHUTDOWN: &[u8] = b"clean_shutdown";
/// `meta["needs_repair"]` = `[1]`: something inconsistent was seen (a corrupt record, a dangling
/// index entry) or a repair was interrupted; the next `open` runs `check_and_repair`.
pub(super) const META_NEEDS_REPAIR: &[u8] = b"needs_repair";

// ---------------------------------------------------------------------------------------------
// Tree names.

/// `seq8 → signed bytes`: every stored record, the source of truth.
pub(super) const TREE_LOG: &str = "log";
/// `id32 → expiry8 ‖ author32`: refused-id markers.
pub(super) const TREE_REFUSED: &str = "refused";
/// `name → value`: schema version and flags.
pub(super) const TREE_META: &str = "meta";
/// Schema 1's trees: `records` (`id32 → signed bytes`, copied into `log` by the migration) and its
/// derived indexes, dropped once the migration is recorded.
pub(super) const SCHEMA1_RECORDS: &str = "records";
pub(super) const SCHEMA1_INDEXES: [&str; 7] =
    ["heads", "by_author", "by_scope", "by_kind", "by_expiry", "links", "counts"];

// ---------------------------------------------------------------------------------------------
// log tree: `seq8` → signed bytes.

/// The `log` key of sequence number `seq`.
pub(super) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// A sequence number from a `log` key (exactly 8 bytes).
pub(super) fn seq_of(k: &[u8]) -> Option<u64> {
    if k.len() == 8 { u64_at(k, 0) } else { None }
}

// ---------------------------------------------------------------------------------------------
// refused tree: `id32` → `expiry8 ‖ author32`.

/// A refused-id marker: the id is refused until `expiry` (`NEVER` for good), when it comes from
/// `author`. The author is kept because a revocation may name an id we have not seen: the marker
/// must not let anyone refuse someone else's record by revoking its id in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marker {
    pub expiry: Timestamp,
    pub author: [u8; 32],
}

impl Marker {
    pub fn encode(&self) -> [u8; 40] {
        let mut v = [0u8; 40];
        v[..8].copy_from_slice(&self.expiry.to_be_bytes());
        v[8..].copy_from_slice(&self.author);
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 40 {
            return None;
        }
        let mut author = [0u8; 32];
        author.copy_from_slice(&v[8..]);
        Some(Marker { expiry: u64_at(v, 0)?, author })
    }

    /// Does this marker refuse a record by `author` at `now`?
    pub fn refuses(&self, author: &[u8; 32], now: Timestamp) -> bool {
        self.author == *author && self.expiry > now
    }
}

/// A record id from a `refused` key (exactly 32 bytes).
pub(super) fn record_key(k: &[u8]) -> Option<RecordId> {
    if k.len() == 32 { id_at(k, 0) } else { None }
}

// ---------------------------------------------------------------------------------------------
// Scopes.

/// Byte that starts the key encoding of [`Scope::Global`].
const SCOPE_GLOBAL: u8 = 0x01;
/// Byte that starts the key encoding of [`Scope::Community`].
const SCOPE_COMMUNITY: u8 = 0x02;

impl Scope {
    /// A stable byte encoding, ordered as the scopes sort: `0x01` for Global, `0x02 ‖ slug` for a
    /// community, always followed by a 0x00 terminator (so no scope's encoding is a prefix of
    /// another's). `None` for a community name holding 0x00, which no record can have.
    pub fn key_prefix(&self) -> Option<Vec<u8>> {
        let mut k = Vec::new();
        match self {
            Scope::Global => k.push(SCOPE_GLOBAL),
            Scope::Community(c) => {
                if c.as_bytes().contains(&0) {
                    return None;
                }
                k.push(SCOPE_COMMUNITY);
                k.extend_from_slice(c.as_bytes());
            }
        }
        k.push(0);
        Some(k)
    }
}

/// The sync scope of a record: a listing's community, Global for every other public record, none
/// for private records (proposals, and the cancellations that decline or withdraw one).
pub(super) fn scope_of(header: &Header, body: &Body) -> Option<Scope> {
    match body {
        Body::Listing(l) => Some(Scope::Community(l.community.clone())),
        Body::Cancellation(c) if matches!(c.reason, CancelReason::Declined | CancelReason::Withdrawn) => None,
        _ if header.record_type.is_public() => Some(Scope::Global),
        _ => None,
    }
}

/// When a stored record stops being worth keeping: a listing's `valid_until`, a vouch's
/// `expires_at`, a withdrawal's retention. `None` for records kept for good.
pub(super) fn expiry_of(header: &Header, body: &Body) -> Option<Timestamp> {
    match body {
        Body::Listing(l) => Some(l.valid_until),
        Body::Vouch(v) => Some(v.expires_at),
        Body::Withdrawal(_) => Some(header.created_at.saturating_add(WITHDRAWAL_RETENTION_SECS)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers.

pub(super) fn id_at(v: &[u8], at: usize) -> Option<RecordId> {
    Some(RecordId(v.get(at..at + 32)?.try_into().ok()?))
}

pub(super) fn u64_at(v: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?))
}

pub(super) fn u32_at(v: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?))
}
