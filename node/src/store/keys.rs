//! The byte layout of every sled key and value the store writes, and the index entries a record
//! implies.
//!
//! Every integer is big-endian, so that the lexicographic order sled keeps is the numeric order:
//! a prefix scan of `author ‖ created_at ‖ id` yields an author's records oldest first. Variable-length
//! strings (community slugs) never contain 0x00 (the protocol only allows `a-z 0-9 -`), so they are
//! terminated with 0x00 and a prefix scan of one community never sees another whose name starts the
//! same way.
//!
//! Only [`entries`] decides which index entries a record has; inserting, deleting and rebuilding all
//! go through it, so the three can never disagree.

use troc_protocol::limits::MAX_LISTING_LIFETIME_SECS;
use troc_protocol::{Body, Header, ListingKey, PublicKey, RecordId, RecordType, Timestamp};

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
/// `meta["clean_shutdown"]` = `[1]`, present only between `close` and the next `open`.
pub(super) const META_CLEAN_SHUTDOWN: &[u8] = b"clean_shutdown";
/// `meta["needs_repair"]` = `[1]`: something inconsistent was seen (a corrupt record, a dangling
/// index entry) or a repair was interrupted; the next `open` runs `check_and_repair`.
pub(super) const META_NEEDS_REPAIR: &[u8] = b"needs_repair";

// ---------------------------------------------------------------------------------------------
// heads tree: the current state of replaceable addresses. One tree, a prefix byte per kind.

/// Prefix of `heads` entries for the current revision of a listing address.
const HEAD_LISTING: u8 = 0x01;
/// Prefix of `heads` entries for the withdrawal of a listing address.
const HEAD_WITHDRAWAL: u8 = 0x02;
/// Prefix of `heads` entries for an author's current profile.
const HEAD_PROFILE: u8 = 0x03;

/// `heads`: `0x01 ‖ author32 ‖ key16` → [`ListingHead`] (the current revision of the address).
pub(super) fn head_listing(author: &PublicKey, key: &ListingKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 32 + 16);
    k.push(HEAD_LISTING);
    k.extend_from_slice(author.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// `heads`: `0x02 ‖ author32 ‖ key16` → withdrawal id32.
pub(super) fn head_withdrawal(author: &PublicKey, key: &ListingKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 32 + 16);
    k.push(HEAD_WITHDRAWAL);
    k.extend_from_slice(author.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// `heads`: `0x03 ‖ author32` → [`ProfileHead`].
pub(super) fn head_profile(author: &PublicKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 32);
    k.push(HEAD_PROFILE);
    k.extend_from_slice(author.as_bytes());
    k
}

/// The value of a listing head: `id32 ‖ revision4 ‖ valid_until8`. The revision is there so that
/// a newer revision can be compared without reading and decoding the stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListingHead {
    pub id: RecordId,
    pub revision: u32,
    pub valid_until: Timestamp,
}

impl ListingHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(44);
        v.extend_from_slice(self.id.as_bytes());
        v.extend_from_slice(&self.revision.to_be_bytes());
        v.extend_from_slice(&self.valid_until.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 44 {
            return None;
        }
        Some(ListingHead { id: id_at(v, 0)?, revision: u32_at(v, 32)?, valid_until: u64_at(v, 36)? })
    }

    /// Does a revision `(revision, id)` beat this head? Higher revision wins; on equal revisions the
    /// greater id wins, so every node picks the same one whatever the arrival order.
    pub fn is_beaten_by(&self, revision: u32, id: &RecordId) -> bool {
        (revision, id) > (self.revision, &self.id)
    }
}

/// The value of a profile head: `id32 ‖ created_at8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProfileHead {
    pub id: RecordId,
    pub created_at: Timestamp,
}

impl ProfileHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(self.id.as_bytes());
        v.extend_from_slice(&self.created_at.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 40 {
            return None;
        }
        Some(ProfileHead { id: id_at(v, 0)?, created_at: u64_at(v, 32)? })
    }

    /// Newer `created_at` wins; on a tie the greater id.
    pub fn is_beaten_by(&self, created_at: Timestamp, id: &RecordId) -> bool {
        (created_at, id) > (self.created_at, &self.id)
    }
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
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&self.expiry.to_be_bytes());
        v.extend_from_slice(&self.author);
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
}

// ---------------------------------------------------------------------------------------------
// by_expiry tree: `tag1 ‖ expiry8 ‖ id32` → empty.

/// `by_expiry` tag of a stored record that expires (listing, vouch, withdrawal).
pub(super) const EXPIRY_RECORD: u8 = 0x01;
/// `by_expiry` tag of a refused-id marker with a finite expiry.
pub(super) const EXPIRY_MARKER: u8 = 0x02;

/// `by_expiry`: `tag1 ‖ expiry8 ‖ id32`.
pub(super) fn expiry_key(tag: u8, expiry: Timestamp, id: &RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(41);
    k.push(tag);
    k.extend_from_slice(&expiry.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The end (inclusive) of the `by_expiry` range of `tag` entries expired at `now` (expiry ≤ now).
pub(super) fn expiry_range(tag: u8, now: Timestamp) -> (Vec<u8>, Vec<u8>) {
    let start = vec![tag];
    let mut end = Vec::with_capacity(41);
    end.push(tag);
    end.extend_from_slice(&now.to_be_bytes());
    end.extend_from_slice(&[0xff; 32]);
    (start, end)
}

// ---------------------------------------------------------------------------------------------
// counts tree: counters kept in the same transaction as the writes they count. Values u64 BE.

/// `counts[0x01]`: every stored record.
pub(super) const COUNT_TOTAL: &[u8] = &[0x01];
/// `counts[0x05]`: bytes of every stored record.
pub(super) const COUNT_BYTES: &[u8] = &[0x05];
/// `counts[0x06]`: listing addresses with a current revision.
pub(super) const COUNT_LIVE: &[u8] = &[0x06];

/// `counts`: `0x02 ‖ author32`: records of one author.
pub(super) fn count_author(author: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![0x02];
    k.extend_from_slice(author);
    k
}

/// `counts`: `0x03 ‖ author32`: listing addresses of one author with a current revision.
pub(super) fn count_live(author: &[u8; 32]) -> Vec<u8> {
    let mut k = vec![0x03];
    k.extend_from_slice(author);
    k
}

/// `counts`: `0x04 ‖ type code`: records of one type.
pub(super) fn count_type(t: RecordType) -> Vec<u8> {
    vec![0x04, t.code()]
}

// ---------------------------------------------------------------------------------------------
// Scopes.

/// Byte that starts the key encoding of [`Scope::Global`].
const SCOPE_GLOBAL: u8 = 0x01;
/// Byte that starts the key encoding of [`Scope::Community`].
const SCOPE_COMMUNITY: u8 = 0x02;

impl Scope {
    /// The stable key encoding: `0x01` for Global, `0x02 ‖ slug` for a community, always followed by
    /// the 0x00 terminator. `None` for a community name holding 0x00, which no record can have.
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

    /// Parses the scope at the start of a `by_scope` key; returns it and the length of its encoding
    /// (terminator included).
    pub(super) fn parse_prefix(key: &[u8]) -> Option<(Scope, usize)> {
        let end = key.iter().position(|&b| b == 0)?;
        let scope = match *key.first()? {
            SCOPE_GLOBAL if end == 1 => Scope::Global,
            SCOPE_COMMUNITY => Scope::Community(String::from_utf8(key[1..end].to_vec()).ok()?),
            _ => return None,
        };
        Some((scope, end + 1))
    }
}

/// The sync scope of a record: a listing's community, Global for every other public record, none
/// for private records (proposals).
pub(super) fn scope_of(header: &Header, body: &Body) -> Option<Scope> {
    match body {
        Body::Listing(l) => Some(Scope::Community(l.community.clone())),
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
// Index entries.

/// The index trees a record has entries in (the heads, counts and refused trees are state kept by
/// the apply rules, not per-record entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ix {
    /// `by_author`: `author32 ‖ created_at8 ‖ id32` → `type1`.
    ByAuthor,
    /// `by_scope`: `scope ‖ 0x00 ‖ created_at8 ‖ id32` → `expiry8` or empty.
    ByScope,
    /// `by_kind` (listings): `kind1 ‖ category1 ‖ created_at8 ‖ id32` → `expiry8`.
    ByKind,
    /// `by_expiry`: `0x01 ‖ expiry8 ‖ id32` → empty (markers use tag 0x02, see [`EXPIRY_MARKER`]).
    ByExpiry,
    /// `links`: `tag1 ‖ key32 ‖ created_at8 ‖ id32` → `type1`, see [`LINK_PARTY`] and friends.
    Links,
}

/// `links` tag: `0x01 ‖ party32 ‖ …`: proposals, agreements and extensions, once per party.
pub(super) const LINK_PARTY: u8 = 0x01;
/// `links` tag: `0x02 ‖ deal id32 ‖ …`: records naming a deal (an agreement, or the proposal a
/// cancellation declines): handover, return, acknowledgement, completion, cancellation, extension,
/// review, review commitment.
pub(super) const LINK_REFERENCE: u8 = 0x02;
/// `links` tag: `0x03 ‖ subject32 ‖ …`: reviews, review commitments and vouches about a person.
pub(super) const LINK_SUBJECT: u8 = 0x03;

/// `prefix32 ‖ created_at8 ‖ id32`, after an optional tag byte.
fn time_key(head: &[u8], created_at: Timestamp, id: &RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(head.len() + 40);
    k.extend_from_slice(head);
    k.extend_from_slice(&created_at.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// A `links` prefix: `tag1 ‖ key32`.
pub(super) fn link_prefix(tag: u8, key: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(tag);
    k.extend_from_slice(key);
    k
}

/// A `by_kind` prefix: `kind1` or `kind1 ‖ category1`.
pub(super) fn kind_prefix(kind: troc_protocol::Kind, category: Option<troc_protocol::Category>) -> Vec<u8> {
    let mut k = vec![kind.code()];
    k.extend(category.map(|c| c.code()));
    k
}

/// Every index entry of a record, as (tree, key, value).
pub(super) fn entries(id: &RecordId, header: &Header, body: &Body) -> Vec<(Ix, Vec<u8>, Vec<u8>)> {
    let at = header.created_at;
    let ty = vec![header.record_type.code()];
    let expiry = expiry_of(header, body);
    let expiry_value = expiry.map(|e| e.to_be_bytes().to_vec()).unwrap_or_default();
    let mut out = Vec::with_capacity(6);

    out.push((Ix::ByAuthor, time_key(header.author.as_bytes(), at, id), ty.clone()));
    if let Some(prefix) = scope_of(header, body).and_then(|s| s.key_prefix()) {
        out.push((Ix::ByScope, time_key(&prefix, at, id), expiry_value.clone()));
    }
    if let Some(e) = expiry {
        out.push((Ix::ByExpiry, expiry_key(EXPIRY_RECORD, e, id), Vec::new()));
    }
    let mut link =
        |tag: u8, key: &[u8; 32]| out.push((Ix::Links, time_key(&link_prefix(tag, key), at, id), ty.clone()));
    match body {
        Body::Listing(l) => {
            out.push((Ix::ByKind, time_key(&kind_prefix(l.kind, Some(l.category)), at, id), expiry_value));
        }
        Body::Proposal(p) => {
            link(LINK_PARTY, header.author.as_bytes());
            link(LINK_PARTY, p.counterparty.as_bytes());
        }
        Body::Agreement(a) => {
            link(LINK_PARTY, header.author.as_bytes());
            link(LINK_PARTY, a.counterparty.as_bytes());
        }
        Body::Extension(e) => {
            link(LINK_PARTY, header.author.as_bytes());
            link(LINK_PARTY, e.counterparty.as_bytes());
            link(LINK_REFERENCE, e.agreement.as_bytes());
        }
        Body::Handover(s) => link(LINK_REFERENCE, s.agreement.as_bytes()),
        Body::Return(s) => link(LINK_REFERENCE, s.agreement.as_bytes()),
        Body::Completion(s) => link(LINK_REFERENCE, s.agreement.as_bytes()),
        Body::Acknowledgement(a) => link(LINK_REFERENCE, a.agreement.as_bytes()),
        Body::Cancellation(c) => link(LINK_REFERENCE, c.deal.as_bytes()),
        Body::Review(r) => {
            link(LINK_REFERENCE, r.agreement.as_bytes());
            link(LINK_SUBJECT, r.subject.as_bytes());
        }
        Body::ReviewCommitment(r) => {
            link(LINK_REFERENCE, r.agreement.as_bytes());
            link(LINK_SUBJECT, r.subject.as_bytes());
        }
        Body::Vouch(v) => link(LINK_SUBJECT, v.subject.as_bytes()),
        Body::Profile(_) | Body::Withdrawal(_) | Body::Revocation(_) => {}
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers. Index keys end with `created_at8 ‖ id32`.

/// The `(created_at, id)` at the end of a time-ordered index key.
pub(super) fn tail_of(key: &[u8]) -> Option<(Timestamp, RecordId)> {
    let n = key.len().checked_sub(40)?;
    Some((u64_at(key, n)?, id_at(key, n + 8)?))
}

/// The id at the end of a `by_expiry` key, and its expiry.
pub(super) fn expiry_tail(key: &[u8]) -> Option<(Timestamp, RecordId)> {
    if key.len() != 41 {
        return None;
    }
    Some((u64_at(key, 1)?, id_at(key, 9)?))
}

pub(super) fn id_at(v: &[u8], at: usize) -> Option<RecordId> {
    Some(RecordId(v.get(at..at + 32)?.try_into().ok()?))
}

pub(super) fn u64_at(v: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?))
}

pub(super) fn u32_at(v: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?))
}

/// A record id from a `records` key (exactly 32 bytes).
pub(super) fn record_key(k: &[u8]) -> Option<RecordId> {
    if k.len() == 32 { id_at(k, 0) } else { None }
}

/// A big-endian u64 counter value; missing is zero.
pub(super) fn counter_value(v: Option<&[u8]>) -> Option<u64> {
    match v {
        None => Some(0),
        Some(v) if v.len() == 8 => u64_at(v, 0),
        Some(_) => None,
    }
}
