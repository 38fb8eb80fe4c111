//! Catch-up: range-based set reconciliation of the live records of one scope, and its wire messages.
//!
//! This module is pure and synchronous: no network, no disk, no clock. The swarm carries its
//! messages over libp2p request-response ([`PROTOCOL`], `cbor` codec); the store supplies the items.
//! A scope is a community slug or `"global"`; an item is `(created_at, record id)`.
//!
//! Protocol flow, for one scope, between an initiator I and a responder R:
//!
//! 1. **start**: I builds a [`Reconciler`] from its items and sends the first
//!    [`SyncRequest::Reconcile`] (round 0). I picks `session`; it only correlates rounds in logs.
//! 2. **rounds**: R answers each `Reconcile` with [`respond`] over a [`Responder`] (a sealed
//!    negentropy storage of R's items, cached per scope): [`SyncResponse::Reconcile`]. I feeds the
//!    answer to [`Reconciler::on_response`], which yields the next request ([`Step::Continue`]) or
//!    the result ([`Step::Done`]). A request carries at most [`FRAME_SIZE_LIMIT`] bytes of
//!    compact message, a response at most [`RESPONSE_FRAME_SIZE_LIMIT`]; a difference too large
//!    for one frame simply takes more rounds, at most [`MAX_ROUNDS`] per session (a session cut
//!    short still yields correct, partial have/need: `complete: false`, and the next session
//!    carries on from there).
//! 3. **have/need**: `have` = ids I has and R lacks, `need` = [`IdPrefix`]es of the ids R has and
//!    I lacks. Only I learns them; R learns nothing, which is why I pushes.
//! 4. **Fetch/Push**: I asks for `need` by prefix in [`SyncRequest::Fetch`] batches of at most
//!    [`MAX_FETCH_IDS`] ([`fetch_requests`]); R resolves the prefixes among the scope's items and
//!    answers with [`SyncResponse::Records`] built by [`answer_fetch`] (bounded by
//!    [`MAX_RESPONSE_BYTES`]; I re-asks for what was not sent, see [`not_sent`]). I sends the
//!    `have` records as exact signed bytes in [`SyncRequest::Push`] batches ([`push_requests`]); R
//!    ingests them like gossip and answers [`SyncResponse::Pushed`].
//!
//! Bytes exchanged during the rounds grow with the size of the difference (and logarithmically with
//! the store), not with the store: equal ranges are compared by a 16-byte fingerprint. Measured
//! (`benches/catchup.rs`, 100,000 records): about 10 bytes per difference when the differences are
//! the newest records (a node back from offline), about 340 bytes per difference when they are
//! scattered through time (each differing leaf range, up to 31 items, is listed as prefixes).
//!
//! ## Compact messages
//!
//! `Reconcile` messages are negentropy protocol-version-1 messages (first byte 0x61) with one
//! change: in an id list (mode 2) each id is its first [`PREFIX_LEN`] bytes, not all 32. Bounds,
//! modes, fingerprints and counts are byte for byte negentropy's. Why: negentropy lists any
//! differing range of fewer than 32 items in full, and at 100,000 items those leaves hold about
//! 24 items, so with scattered differences the id lists were 95 % of the bytes (800 bytes a
//! difference, more than the 600-byte record); the crate's leaf threshold and id size are private
//! constants. The receiver of a compact message expands it back (`expand`) before handing it to
//! negentropy: each prefix becomes the full id of its own item with that prefix in the same range
//! (ranges computed as negentropy computes them), or a placeholder (the prefix and 24 zero bytes)
//! if it has none; its own message is compacted (`compact`) after negentropy wrote it. The
//! initiator's negentropy puts the placeholders in `need`, so `need` is known by prefix only, and
//! `Fetch` asks by prefix. The responder never uses the ids of a list it receives (it answers any
//! id list with its own), so placeholders there change nothing.
//!
//! A prefix stands for the id only inside one range of about 24 items (for the list) or one
//! scope (for `Fetch`); two ids sharing 8 bytes by accident are very unlikely (see
//! [`PREFIX_LEN`]). Someone grinding about 2^32 hashes can make two records of their own share
//! a prefix; then a node holding one may miss the other from a peer in that range (the
//! fingerprints still differ, so every session retries; the record still arrives by gossip or
//! from another peer), and `Fetch` returns both. Making a record collide with someone else's
//! takes about 2^64 hashes.
//!
//! Everything that arrives from a peer is bounded before use: [`validate_request`] on the
//! responder, [`validate_response`] and the checks in [`Reconciler::on_response`] on the initiator.
//! A compact message is parsed strictly by `expand` (every number at most 64 bits, every count
//! and length checked against what is left) before negentropy parses it again; a malformed message
//! is a [`SyncError`] ([`codes::BAD_MESSAGE`]), never a panic. Expanding multiplies the size of id
//! lists by 4, so at most 4 × [`FRAME_SIZE_LIMIT`] bytes reach negentropy.
//!
//! Negentropy facts this module relies on (checked in the source of `negentropy` 0.5.3):
//! - Both sides are stateless across rounds: `Negentropy` holds only the storage, the frame
//!   limit, the initiator flag and two timestamp-delta decoders that `reconcile` resets at the
//!   start of every message; the storage is only read (`&self`). So [`respond`] builds a fresh
//!   `Negentropy` over the borrowed, sealed storage for every message (a [`Responder`] can be
//!   shared by any number of concurrent sessions), and the [`Reconciler`] does the same each
//!   round with the initiator flag set (`set_initiator`).
//! - The message format (`transcode` parses it): after the version byte, ranges of
//!   `bound mode body`; a bound is a varint timestamp (0 = infinity, else 1 + the delta from the
//!   previous bound of the message), a varint length (≤ 32) and that many id bytes; mode 0 (skip)
//!   has no body, mode 1 a 16-byte fingerprint, mode 2 a varint count and the ids. Varints are
//!   big-endian base 128 with the high bit set on all but the last byte.
//! - A range starts where the previous one ended: its items are `[lower_bound(previous end,
//!   bound))` of the receiver's sorted items (`find_lower_bound` from the previous index).
//! - Parsing returns `Err` on malformed input (truncation, unknown mode, oversized bound, id count
//!   larger than the message, bad version byte); no reachable index or arithmetic panic was found,
//!   and the tests throw random and mutated messages at both sides.
//! - Work per message is linear in the storage size plus the message size (ranges are consecutive).
//! - The frame limit applies to every message produced by `reconcile`, on each side its own limit:
//!   output stops at about `limit - 200` bytes (in negentropy's encoding, before compacting) and
//!   the rest of the range is deferred to later rounds. The initiator's first message is not
//!   limited but is at most 16 fingerprints or 31 ids (< 1.1 kB). Cutting a frame costs a little
//!   (the deferred rest is re-split from the top), so the responder, whose answers carry the id
//!   lists, gets the larger limit, and lets negentropy write up to 4 frames before compacting
//!   ([`Responder::respond`]).
//! - Items whose timestamp is `u64::MAX` would fall outside the protocol's top bound (`u64::MAX`
//!   is "infinity"), so both sides clamp `created_at` to `u64::MAX - 1`, deterministically.

use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use negentropy::{Bound, ID_SIZE, Id, Negentropy, NegentropyStorageBase, NegentropyStorageVector, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use troc_protocol::RecordId;
use troc_protocol::limits::MAX_RECORD_BYTES;

/// The libp2p request-response protocol name.
pub const PROTOCOL: &str = "/troc/sync/2";

/// Bytes of a record id that stand for it in id lists and `Fetch` requests: the first 8 bytes
/// ([`IdPrefix`]). Ids are SHA-256 outputs, so two ids of one store share a prefix by accident
/// with odds of about n² / 2^65 (3 × 10^-10 for 100,000 records), and making a record whose id
/// starts like someone else's takes about 2^64 hashes.
pub const PREFIX_LEN: usize = 8;

/// The first [`PREFIX_LEN`] bytes of a record id.
pub type IdPrefix = [u8; PREFIX_LEN];

/// The prefix of `id`.
pub fn prefix_of(id: &RecordId) -> IdPrefix {
    let mut p = [0u8; PREFIX_LEN];
    p.copy_from_slice(&id.0[..PREFIX_LEN]);
    p
}

/// Negentropy frame size limit of the initiator, in bytes of negentropy payload: the `msg` of a
/// `Reconcile` request never exceeds it, so the request, with its 50 bytes of CBOR framing and
/// its scope, fits in 64 KiB. The responder refuses larger ones.
pub const FRAME_SIZE_LIMIT: usize = 60_000;

/// Frame size limit of the responder: the (compact) `msg` of a `Reconcile` response never
/// exceeds it (the node accepts responses up to 2 MiB). The initiator refuses larger ones.
/// Responses carry the id lists of differing ranges, so a larger frame means fewer rounds: about
/// 28,000 prefixes fit, so an empty node learns 100,000 ids in 4 rounds (13 with full ids, 54
/// with full ids in 60 kB frames).
pub const RESPONSE_FRAME_SIZE_LIMIT: usize = 250_000;

/// The responder lets negentropy write up to this many frames' worth of its own encoding before
/// compacting (see [`Responder::respond`]): a compacted id list is 4 times smaller.
const RESPONDER_FRAME_STRETCH: usize = 4;

/// Most `Reconcile` requests in one session (rounds 0 to `MAX_ROUNDS - 1`). About 28,000 id
/// prefixes fit in a response frame, so one session of an empty node against a full peer learns
/// about 1,400,000 ids; a session cut short yields what it learned and the next one continues
/// from there.
pub const MAX_ROUNDS: u16 = 50;

/// Most ids in one `Fetch` request, and so most records and `missing` ids in its answer.
pub const MAX_FETCH_IDS: usize = 256;

/// Most bytes of records (sum of the record lengths) in one `Records` response: 1 MiB minus 64 KiB
/// left for CBOR framing (3 bytes a record) and the `missing` ids (34 bytes each).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024 - 64 * 1024;

/// Most records in one `Push` request.
pub const MAX_PUSH_RECORDS: usize = 256;

/// Most bytes of records (sum of the record lengths) in one `Push` request. The `cbor` codec
/// refuses requests over 1 MiB by default; this leaves 64 KiB for framing.
pub const MAX_PUSH_BYTES: usize = 1024 * 1024 - 64 * 1024;

/// Longest scope, in bytes of UTF-8.
pub const MAX_SCOPE_LEN: usize = 80;

/// Stable refusal codes of [`SyncResponse::Refused`]. The node may use the last three itself.
pub mod codes {
    pub const BAD_SCOPE: &str = "bad_scope";
    pub const TOO_MANY_IDS: &str = "too_many_ids";
    pub const TOO_MANY_RECORDS: &str = "too_many_records";
    pub const RECORD_TOO_LARGE: &str = "record_too_large";
    pub const TOO_MANY_BYTES: &str = "too_many_bytes";
    pub const MESSAGE_TOO_LARGE: &str = "message_too_large";
    pub const TOO_MANY_ROUNDS: &str = "too_many_rounds";
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    pub const BAD_MESSAGE: &str = "bad_message";
    pub const PROTOCOL_ERROR: &str = "protocol_error";
    /// The responder does not serve this scope.
    pub const UNKNOWN_SCOPE: &str = "unknown_scope";
    /// The responder is overloaded or rate-limits this peer; try later.
    pub const BUSY: &str = "busy";
    /// Any other failure on the responder (store error ...).
    pub const INTERNAL: &str = "internal";
}

// ---------------------------------------------------------------------------------------------
// Wire messages

/// A request of the sync protocol.
///
/// Byte fields (`msg`, records, id prefixes) are encoded as CBOR byte strings (not arrays of
/// integers): an 8-byte id prefix costs 9 bytes on the wire, a record its length plus 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// One negentropy message for one scope.
    Reconcile {
        /// The scope: a community slug or `"global"`; 1 to [`MAX_SCOPE_LEN`] bytes, no control
        /// characters.
        scope: String,
        /// Chosen by the initiator at random; the same for every round of a session. Correlates
        /// rounds in logs; the responder keeps no state per session.
        session: u64,
        /// 0 for the first message of a session, then 1, 2 ...; below [`MAX_ROUNDS`].
        round: u16,
        /// The reconciliation message in the compact encoding (see "Compact messages" in the
        /// module documentation; the first one starts with the version byte 0x61), at most
        /// [`FRAME_SIZE_LIMIT`] bytes.
        #[serde(with = "wire::bytes")]
        msg: Vec<u8>,
    },
    /// Ask for the records of `scope` whose ids start with these prefixes (the `need` of a
    /// reconciliation): at most [`MAX_FETCH_IDS`] prefixes.
    Fetch {
        /// As in `Reconcile`: the responder resolves prefixes among this scope's live records.
        scope: String,
        #[serde(with = "wire::prefixes")]
        prefixes: Vec<IdPrefix>,
    },
    /// Records the responder lacks (the initiator's `have`), each as its exact signed bytes: at
    /// most [`MAX_PUSH_RECORDS`] records, each at most `MAX_RECORD_BYTES`, [`MAX_PUSH_BYTES`] in all.
    /// The responder verifies and ingests them like gossip.
    Push {
        #[serde(with = "wire::bytes_list")]
        records: Vec<Vec<u8>>,
    },
}

/// A response of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Answer to `Reconcile`: the responder's negentropy message (at most
    /// [`RESPONSE_FRAME_SIZE_LIMIT`] bytes), or `None` when every range matched: reconciliation is complete from the responder's
    /// side (the initiator then finishes with what it has learned).
    Reconcile {
        #[serde(with = "wire::opt_bytes")]
        msg: Option<Vec<u8>>,
    },
    /// Answer to `Fetch`, records in the order they were asked for.
    ///
    /// - `records`: exact signed bytes of the scope's live records whose ids start with a prefix
    ///   asked for (every such record: normally one a prefix), at most [`MAX_FETCH_IDS`] records
    ///   and [`MAX_RESPONSE_BYTES`] in all.
    /// - `missing`: prefixes asked for that match no record the responder holds (or will serve,
    ///   e.g. expired). Do not ask this peer for them again in this session.
    /// - Prefixes neither matched by a returned record nor in `missing` did not fit in the
    ///   response: ask again (see [`not_sent`]). [`answer_fetch`] always sends at least the first
    ///   record found.
    Records {
        #[serde(with = "wire::bytes_list")]
        records: Vec<Vec<u8>>,
        #[serde(with = "wire::prefixes")]
        missing: Vec<IdPrefix>,
    },
    /// Answer to `Push`: how many of the records were new and valid (stored).
    Pushed { accepted: u32 },
    /// The request was refused. `code` is one of [`codes`]; `message` is for humans and logs.
    Refused { code: String, message: String },
}

impl SyncResponse {
    /// A refusal with a stable code.
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        SyncResponse::Refused { code: code.to_owned(), message: message.into() }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Everything that can go wrong in reconciliation or with an incoming message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SyncError {
    #[error("bad scope: {reason}")]
    BadScope { reason: &'static str },
    #[error("{count} ids in one request (at most {max})")]
    TooManyIds { count: usize, max: usize },
    #[error("{count} records in one message (at most {max})")]
    TooManyRecords { count: usize, max: usize },
    #[error("a record of {len} bytes (at most {max})")]
    RecordTooLarge { len: usize, max: usize },
    #[error("{len} bytes of records in one message (at most {max})")]
    TooManyBytes { len: usize, max: usize },
    #[error("reconciliation message of {len} bytes (at most {max})")]
    MessageTooLarge { len: usize, max: usize },
    #[error("round {round} is over the limit of {max} rounds a session")]
    TooManyRounds { round: u16, max: u16 },
    #[error("unsupported negentropy protocol version {got:?} (we speak {PROTOCOL_VERSION:#x})")]
    UnsupportedVersion { got: Option<u8> },
    #[error("malformed reconciliation message: {0}")]
    Negentropy(negentropy::Error),
    /// The compact encoding of a reconciliation message does not parse.
    #[error("malformed reconciliation message: {0}")]
    BadMessage(&'static str),
    #[error("reconciliation protocol misuse: {0}")]
    Protocol(&'static str),
}

impl SyncError {
    /// The stable code of this error, as sent in [`SyncResponse::Refused`].
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::BadScope { .. } => codes::BAD_SCOPE,
            SyncError::TooManyIds { .. } => codes::TOO_MANY_IDS,
            SyncError::TooManyRecords { .. } => codes::TOO_MANY_RECORDS,
            SyncError::RecordTooLarge { .. } => codes::RECORD_TOO_LARGE,
            SyncError::TooManyBytes { .. } => codes::TOO_MANY_BYTES,
            SyncError::MessageTooLarge { .. } => codes::MESSAGE_TOO_LARGE,
            SyncError::TooManyRounds { .. } => codes::TOO_MANY_ROUNDS,
            SyncError::UnsupportedVersion { .. } => codes::UNSUPPORTED_VERSION,
            SyncError::Negentropy(_) | SyncError::BadMessage(_) => codes::BAD_MESSAGE,
            SyncError::Protocol(_) => codes::PROTOCOL_ERROR,
        }
    }

    /// The refusal to send back for this error.
    pub fn to_refusal(&self) -> SyncResponse {
        SyncResponse::refused(self.code(), self.to_string())
    }
}

impl From<negentropy::Error> for SyncError {
    fn from(e: negentropy::Error) -> Self {
        SyncError::Negentropy(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Checks a scope: 1 to [`MAX_SCOPE_LEN`] bytes, no control characters.
pub fn validate_scope(scope: &str) -> Result<(), SyncError> {
    if scope.is_empty() {
        return Err(SyncError::BadScope { reason: "empty" });
    }
    if scope.len() > MAX_SCOPE_LEN {
        return Err(SyncError::BadScope { reason: "longer than 80 bytes" });
    }
    if scope.chars().any(char::is_control) {
        return Err(SyncError::BadScope { reason: "control character" });
    }
    Ok(())
}

fn validate_msg(msg: &[u8], max: usize) -> Result<(), SyncError> {
    if msg.len() > max {
        return Err(SyncError::MessageTooLarge { len: msg.len(), max });
    }
    Ok(())
}

fn validate_records(records: &[Vec<u8>], max_count: usize, max_bytes: usize) -> Result<(), SyncError> {
    if records.len() > max_count {
        return Err(SyncError::TooManyRecords { count: records.len(), max: max_count });
    }
    let mut total = 0usize;
    for r in records {
        if r.len() > MAX_RECORD_BYTES {
            return Err(SyncError::RecordTooLarge { len: r.len(), max: MAX_RECORD_BYTES });
        }
        total += r.len();
    }
    if total > max_bytes {
        return Err(SyncError::TooManyBytes { len: total, max: max_bytes });
    }
    Ok(())
}

fn validate_ids(prefixes: &[IdPrefix]) -> Result<(), SyncError> {
    if prefixes.len() > MAX_FETCH_IDS {
        return Err(SyncError::TooManyIds { count: prefixes.len(), max: MAX_FETCH_IDS });
    }
    Ok(())
}

/// Checks the bounds of an incoming request (responder side), before any work is done for it.
/// On error, answer `err.to_refusal()`. Whether the scope is served is the node's business
/// ([`codes::UNKNOWN_SCOPE`]).
pub fn validate_request(req: &SyncRequest) -> Result<(), SyncError> {
    match req {
        SyncRequest::Reconcile { scope, session: _, round, msg } => {
            validate_scope(scope)?;
            if *round >= MAX_ROUNDS {
                return Err(SyncError::TooManyRounds { round: *round, max: MAX_ROUNDS });
            }
            validate_msg(msg, FRAME_SIZE_LIMIT)
        }
        SyncRequest::Fetch { scope, prefixes } => {
            validate_scope(scope)?;
            validate_ids(prefixes)
        }
        SyncRequest::Push { records } => validate_records(records, MAX_PUSH_RECORDS, MAX_PUSH_BYTES),
    }
}

/// Checks the bounds of an incoming response (initiator side). `Reconcile` messages are checked
/// again by [`Reconciler::on_response`].
pub fn validate_response(resp: &SyncResponse) -> Result<(), SyncError> {
    match resp {
        SyncResponse::Reconcile { msg } => {
            msg.as_deref().map_or(Ok(()), |m| validate_msg(m, RESPONSE_FRAME_SIZE_LIMIT))
        }
        SyncResponse::Records { records, missing } => {
            validate_records(records, MAX_FETCH_IDS, MAX_RESPONSE_BYTES)?;
            validate_ids(missing)
        }
        SyncResponse::Pushed { .. } => Ok(()),
        SyncResponse::Refused { code, message } => {
            if code.len() > 64 || message.len() > 1024 {
                return Err(SyncError::Protocol("refusal text too long"));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

/// Clamps `created_at` below `u64::MAX`, which negentropy uses as the open upper bound.
fn clamp_time(t: u64) -> u64 {
    t.min(u64::MAX - 1)
}

/// Builds a sealed storage. Sealing sorts by (created_at, id) and drops exact duplicates, so the
/// input order does not matter (already-sorted input, as the store returns it, sorts in O(n)).
fn build_storage(items: Vec<(u64, RecordId)>) -> Result<NegentropyStorageVector, SyncError> {
    let mut storage = NegentropyStorageVector::with_capacity(items.len());
    for (created_at, id) in items {
        storage.insert(clamp_time(created_at), Id::from_byte_array(id.0))?;
    }
    storage.seal()?;
    Ok(storage)
}

fn record_id(id: Id) -> RecordId {
    RecordId(id.to_bytes())
}

fn check_version(msg: &[u8]) -> Result<(), SyncError> {
    match msg.first() {
        Some(&v) if u64::from(v) == PROTOCOL_VERSION => Ok(()),
        other => Err(SyncError::UnsupportedVersion { got: other.copied() }),
    }
}

// ---------------------------------------------------------------------------------------------
// Compact messages

/// Largest varint this module reads (10 bytes hold 64 bits).
const MAX_VARINT_LEN: usize = 10;

fn read_varint(buf: &mut &[u8]) -> Result<u64, SyncError> {
    let mut v: u64 = 0;
    for _ in 0..MAX_VARINT_LEN {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(SyncError::BadMessage("truncated number"));
        };
        *buf = rest;
        if v >> 57 != 0 {
            return Err(SyncError::BadMessage("number over 64 bits"));
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(SyncError::BadMessage("number longer than 10 bytes"))
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; MAX_VARINT_LEN];
    let mut i = MAX_VARINT_LEN;
    loop {
        i -= 1;
        tmp[i] = (n & 0x7f) as u8 | if i == MAX_VARINT_LEN - 1 { 0 } else { 0x80 };
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], SyncError> {
    if buf.len() < n {
        return Err(SyncError::BadMessage("truncated"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Negentropy's range modes (`negentropy::types::Mode`, not exported).
const MODE_SKIP: u64 = 0;
const MODE_FINGERPRINT: u64 = 1;
const MODE_ID_LIST: u64 = 2;
const FINGERPRINT_LEN: usize = negentropy::FINGERPRINT_SIZE;

/// Rewrites a reconciliation message range by range: checks the version byte, copies every
/// bound, mode and fingerprint byte for byte, and lets `on_range` write the body of each id
/// list (its count and ids, each `width_in` bytes in `msg`). `on_range` sees every range's upper
/// bound in order (ranges are consecutive), with `Some((count, ids))` for id lists.
///
/// The parse mirrors negentropy 0.5.3's, but strictly: a number over 64 bits or cut short, an
/// unknown mode, a bound longer than 32 bytes, or an id count larger than the rest of the
/// message is an error, not a guess. So what the crate later parses is what was checked here.
fn transcode(
    msg: &[u8],
    width_in: usize,
    mut on_range: impl FnMut(&Bound, Option<(usize, &[u8])>, &mut Vec<u8>) -> Result<(), SyncError>,
) -> Result<Vec<u8>, SyncError> {
    check_version(msg)?;
    let mut out = Vec::with_capacity(msg.len() * if width_in < ID_SIZE { ID_SIZE / width_in } else { 1 });
    out.push(msg[0]);
    let mut rest = &msg[1..];
    let mut last_timestamp = 0u64;
    while !rest.is_empty() {
        let start = rest;
        // Bound: timestamp (0 = infinity, else delta + 1 from the previous bound), id prefix.
        let t = read_varint(&mut rest)?;
        let t = if t == 0 { u64::MAX } else { t - 1 };
        let timestamp = t.saturating_add(last_timestamp);
        last_timestamp = timestamp;
        let len = read_varint(&mut rest)?;
        if len > ID_SIZE as u64 {
            return Err(SyncError::BadMessage("bound longer than an id"));
        }
        let id = take(&mut rest, len as usize)?;
        let bound = Bound::with_timestamp_and_id(timestamp, id)?;
        let mode = read_varint(&mut rest)?;
        match mode {
            MODE_SKIP => {
                out.extend_from_slice(&start[..start.len() - rest.len()]);
                on_range(&bound, None, &mut out)?;
            }
            MODE_FINGERPRINT => {
                take(&mut rest, FINGERPRINT_LEN)?;
                out.extend_from_slice(&start[..start.len() - rest.len()]);
                on_range(&bound, None, &mut out)?;
            }
            MODE_ID_LIST => {
                out.extend_from_slice(&start[..start.len() - rest.len()]);
                let count = read_varint(&mut rest)?;
                if count > (rest.len() / width_in) as u64 {
                    return Err(SyncError::BadMessage("id count larger than the message"));
                }
                let ids = take(&mut rest, count as usize * width_in)?;
                on_range(&bound, Some((count as usize, ids)), &mut out)?;
            }
            _ => return Err(SyncError::BadMessage("unknown range mode")),
        }
    }
    Ok(out)
}

/// Negentropy message (32-byte ids in id lists) → compact message ([`PREFIX_LEN`]-byte prefixes).
fn compact(msg: &[u8]) -> Result<Vec<u8>, SyncError> {
    transcode(msg, ID_SIZE, |_, list, out| {
        if let Some((count, ids)) = list {
            write_varint(out, count as u64);
            for id in ids.chunks_exact(ID_SIZE) {
                out.extend_from_slice(&id[..PREFIX_LEN]);
            }
        }
        Ok(())
    })
}

/// The full id that stands for a prefix matching none of our items: the prefix followed by
/// zeros. No item of ours in the range has that prefix, so it cannot be mistaken for one; the
/// initiator's negentropy puts it in `need`, where only its prefix is used.
fn placeholder(prefix: &[u8]) -> [u8; ID_SIZE] {
    let mut id = [0u8; ID_SIZE];
    id[..PREFIX_LEN].copy_from_slice(&prefix[..PREFIX_LEN]);
    id
}

/// Compact message → negentropy message, for the side that holds `storage`: each prefix of an
/// id list becomes the full id of our item in that range with that prefix, or a
/// [`placeholder`] when we have none. The ranges are computed exactly as negentropy's
/// `reconcile` computes them (consecutive lower bounds from the previous range's end), so an
/// item is matched only inside the range the peer listed.
fn expand(msg: &[u8], storage: &NegentropyStorageVector) -> Result<Vec<u8>, SyncError> {
    let size = storage.size()?;
    let mut prev = 0usize;
    let mut ours: std::collections::HashMap<IdPrefix, Id> = std::collections::HashMap::new();
    transcode(msg, PREFIX_LEN, |bound, list, out| {
        let upper = storage.find_lower_bound(prev, size, bound);
        if let Some((count, prefixes)) = list {
            ours.clear();
            storage.iterate(prev, upper, &mut |item, _| {
                let mut p = [0u8; PREFIX_LEN];
                p.copy_from_slice(&item.id.as_bytes()[..PREFIX_LEN]);
                ours.entry(p).or_insert(item.id);
                Ok(true)
            })?;
            write_varint(out, count as u64);
            for p in prefixes.chunks_exact(PREFIX_LEN) {
                match p.try_into().ok().and_then(|p: IdPrefix| ours.get(&p)) {
                    Some(id) => out.extend_from_slice(id.as_bytes()),
                    None => out.extend_from_slice(&placeholder(p)),
                }
            }
        }
        prev = upper;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Responder

/// The responder's side for one scope: a sealed negentropy storage of the scope's live items,
/// and their ids sorted by prefix (to answer `Fetch`).
///
/// Build it once per scope and reuse it for every message of every session (it is immutable, so
/// share it behind an `Arc`); rebuild it when the scope's set of live records changes.
pub struct Responder {
    storage: NegentropyStorageVector,
    /// (prefix, index in `storage`), sorted: 16 bytes an item.
    by_prefix: Vec<(IdPrefix, u32)>,
    len: usize,
    frame_limit: usize,
}

impl Responder {
    /// Builds the storage from the scope's items `(created_at, id)`, in any order.
    pub fn new(items: Vec<(u64, RecordId)>) -> Result<Self, SyncError> {
        Self::with_frame_limit(items, RESPONSE_FRAME_SIZE_LIMIT)
    }

    fn with_frame_limit(items: Vec<(u64, RecordId)>, frame_limit: usize) -> Result<Self, SyncError> {
        let storage = build_storage(items)?;
        let len = storage.size()?;
        let mut by_prefix = Vec::with_capacity(len);
        storage.iterate(0, len, &mut |item, i| {
            let mut p = [0u8; PREFIX_LEN];
            p.copy_from_slice(&item.id.as_bytes()[..PREFIX_LEN]);
            // Stores are far below 2^32 records (the node caps them at 1,000,000).
            by_prefix.push((p, u32::try_from(i).map_err(|_| negentropy::Error::BadRange)?));
            Ok(true)
        })?;
        by_prefix.sort_unstable();
        Ok(Responder { storage, by_prefix, len, frame_limit })
    }

    /// The ids of our items that start with `prefix` (normally none or one), in id order.
    pub fn resolve(&self, prefix: &IdPrefix) -> impl Iterator<Item = RecordId> + '_ {
        let prefix = *prefix;
        let start = self.by_prefix.partition_point(|(p, _)| *p < prefix);
        self.by_prefix[start..]
            .iter()
            .take_while(move |(p, _)| *p == prefix)
            .filter_map(|(_, i)| self.storage.get_item(*i as usize).ok().flatten())
            .map(|item| record_id(item.id))
    }

    /// How many distinct items it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Answers one compact reconciliation message; see [`respond`].
    ///
    /// Negentropy cuts its output at a frame limit counted in its own encoding, where an id costs
    /// 32 bytes; compacted, an id list shrinks by 4. So the first attempt lets negentropy write up
    /// to `RESPONDER_FRAME_STRETCH` (4) times the frame; if the compacted answer is still over the
    /// frame, a second attempt scales the limit down by the ratio seen, and a third uses the frame
    /// itself, which always fits (compacting never grows a message). Each attempt is a pass over
    /// the storage; in the common cases (fingerprints only, or a few id lists) the first fits.
    pub fn respond(&self, msg: &[u8]) -> Result<Option<Vec<u8>>, SyncError> {
        validate_msg(msg, FRAME_SIZE_LIMIT)?;
        let query = expand(msg, &self.storage)?;
        let frame = self.frame_limit;
        let mut limit = frame.saturating_mul(RESPONDER_FRAME_STRETCH);
        for attempt in 0..3 {
            let mut neg = Negentropy::borrowed(&self.storage, limit as u64)?;
            let out = compact(&neg.reconcile(&query)?)?;
            if out.len() <= frame {
                // Only the version byte: every range matched, nothing more to say.
                return Ok(if out.len() <= 1 { None } else { Some(out) });
            }
            // Aim a little under the frame: the cut point moves with the limit.
            let scaled = (limit as u128 * frame as u128 * 9 / 10 / out.len() as u128) as usize;
            limit = if attempt == 0 && scaled > frame && scaled < limit { scaled } else { frame };
        }
        // Unreachable: the last attempt's limit is the frame, and compacting never grows a message.
        Err(SyncError::Protocol("compacted answer over the frame limit"))
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").field("len", &self.len).finish_non_exhaustive()
    }
}

/// Answers one negentropy message `msg` (the `msg` of a `Reconcile` request) from the scope's
/// items: `Some(reply)`, or `None` when reconciliation is complete from our side. Stateless: the
/// same `Responder` serves every round of every session.
pub fn respond(items: &Responder, msg: &[u8]) -> Result<Option<Vec<u8>>, SyncError> {
    items.respond(msg)
}

// ---------------------------------------------------------------------------------------------
// Initiator

/// What to do after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this request (the next round) and feed its response to [`Reconciler::on_response`].
    Continue(SyncRequest),
    /// Reconciliation is over. `have`: ids we hold that the peer lacks (push them). `need`:
    /// prefixes of the ids the peer holds that we lack (fetch them by prefix: id lists carry only
    /// prefixes, see the module documentation). Both sorted, without duplicates. `complete` is
    /// false when the session stopped at [`MAX_ROUNDS`]: the lists are correct but partial; start
    /// a new session (after fetching) to learn the rest.
    Done { have: Vec<RecordId>, need: Vec<IdPrefix>, complete: bool },
}

/// Byte and round counts of one session (compact messages only; on the wire, CBOR framing adds
/// at most 50 bytes plus the scope to each request and 21 bytes to each response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// `Reconcile` requests produced (rounds).
    pub rounds: u16,
    /// Bytes of (compact) reconciliation messages we produced.
    pub bytes_sent: u64,
    /// Bytes of (compact) reconciliation messages we received.
    pub bytes_received: u64,
}

/// The initiator's side of one session for one scope. Not reusable: start a new one per session.
pub struct Reconciler {
    scope: String,
    session: u64,
    /// Round of the last request produced.
    round: u16,
    /// Our items. Negentropy keeps no state between messages but its initiator flag, so every
    /// round borrows the storage in a fresh `Negentropy` (and prefixes are expanded against it).
    storage: NegentropyStorageVector,
    frame_limit: usize,
    have: Vec<Id>,
    need: Vec<Id>,
    stats: SyncStats,
    done: bool,
}

impl fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconciler")
            .field("scope", &self.scope)
            .field("session", &self.session)
            .field("round", &self.round)
            .field("have", &self.have.len())
            .field("need", &self.need.len())
            .field("stats", &self.stats)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A fresh session number: a process-wide counter starting at a random point.
fn new_session() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(std::process::id()));
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Reconciler {
    /// Starts a session for `scope` from our items `(created_at, id)` (any order; the store's
    /// (created_at, id) order is cheapest). Returns the first request to send.
    pub fn start(
        scope: impl Into<String>,
        items: Vec<(u64, RecordId)>,
    ) -> Result<(Reconciler, SyncRequest), SyncError> {
        Self::start_with(scope.into(), new_session(), items, FRAME_SIZE_LIMIT)
    }

    fn start_with(
        scope: String,
        session: u64,
        items: Vec<(u64, RecordId)>,
        frame_limit: usize,
    ) -> Result<(Reconciler, SyncRequest), SyncError> {
        validate_scope(&scope)?;
        let storage = build_storage(items)?;
        let msg = compact(&Negentropy::borrowed(&storage, frame_limit as u64)?.initiate()?)?;
        let mut r = Reconciler {
            scope,
            session,
            round: 0,
            storage,
            frame_limit,
            have: Vec::new(),
            need: Vec::new(),
            stats: SyncStats::default(),
            done: false,
        };
        let req = r.request(msg);
        Ok((r, req))
    }

    fn request(&mut self, msg: Vec<u8>) -> SyncRequest {
        self.stats.rounds += 1;
        self.stats.bytes_sent += msg.len() as u64;
        SyncRequest::Reconcile { scope: self.scope.clone(), session: self.session, round: self.round, msg }
    }

    /// The scope being reconciled.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The session number sent in every request.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Bytes and rounds so far.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// Feeds the `msg` of the responder's [`SyncResponse::Reconcile`]. An error ends the session
    /// (the peer sent something malformed or oversized); the node may start a new one later.
    pub fn on_response(&mut self, msg: Option<Vec<u8>>) -> Result<Step, SyncError> {
        if self.done {
            return Err(SyncError::Protocol("response after the session ended"));
        }
        let Some(msg) = msg else {
            return Ok(self.finish(true));
        };
        self.stats.bytes_received += msg.len() as u64;
        let next = validate_msg(&msg, RESPONSE_FRAME_SIZE_LIMIT).and_then(|()| self.reconcile(&msg));
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        match next {
            None => Ok(self.finish(true)),
            Some(_) if self.round + 1 >= MAX_ROUNDS => Ok(self.finish(false)),
            Some(out) => {
                self.round += 1;
                Ok(Step::Continue(self.request(out)))
            }
        }
    }

    /// One round: expand the peer's message against our items, let negentropy answer it, compact
    /// the answer (`None`: nothing more to say).
    fn reconcile(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, SyncError> {
        let query = expand(msg, &self.storage)?;
        let mut neg = Negentropy::borrowed(&self.storage, self.frame_limit as u64)?;
        neg.set_initiator();
        match neg.reconcile_with_ids(&query, &mut self.have, &mut self.need)? {
            Some(out) => Ok(Some(compact(&out)?)),
            None => Ok(None),
        }
    }

    fn finish(&mut self, complete: bool) -> Step {
        self.done = true;
        let mut have: Vec<RecordId> = std::mem::take(&mut self.have).into_iter().map(record_id).collect();
        have.sort_unstable();
        have.dedup();
        // `need` holds placeholders (prefix + zeros) for the prefixes we could not match.
        let mut need: Vec<IdPrefix> =
            std::mem::take(&mut self.need).into_iter().map(|id| prefix_of(&record_id(id))).collect();
        need.sort_unstable();
        need.dedup();
        Step::Done { have, need, complete }
    }
}

// ---------------------------------------------------------------------------------------------
// Fetch and push

/// Splits `need` into `Fetch` requests for `scope` of at most [`MAX_FETCH_IDS`] prefixes.
pub fn fetch_requests(scope: &str, need: &[IdPrefix]) -> Vec<SyncRequest> {
    need.chunks(MAX_FETCH_IDS).map(|c| SyncRequest::Fetch { scope: scope.to_owned(), prefixes: c.to_vec() }).collect()
}

/// Splits records (exact signed bytes) into `Push` requests within [`MAX_PUSH_RECORDS`] and
/// [`MAX_PUSH_BYTES`]. Records over `MAX_RECORD_BYTES` (which no valid record is) are dropped.
pub fn push_requests(records: Vec<Vec<u8>>) -> Vec<SyncRequest> {
    let mut out = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    for r in records.into_iter().filter(|r| r.len() <= MAX_RECORD_BYTES) {
        if batch.len() == MAX_PUSH_RECORDS || bytes + r.len() > MAX_PUSH_BYTES {
            out.push(SyncRequest::Push { records: std::mem::take(&mut batch) });
            bytes = 0;
        }
        bytes += r.len();
        batch.push(r);
    }
    if !batch.is_empty() {
        out.push(SyncRequest::Push { records: batch });
    }
    out
}

/// Builds the answer to a (validated) `Fetch` for `prefixes`: resolves each prefix, in order,
/// among the scope's items (`responder`), looks the ids up (`Ok(None)`: no longer held) and stops
/// before the record that would take the response over [`MAX_FETCH_IDS`] records or
/// [`MAX_RESPONSE_BYTES`]; the prefixes from there on are neither answered nor listed as missing.
/// A prefix that yields no record is `missing`. A lookup error aborts (answer
/// [`codes::INTERNAL`]).
pub fn answer_fetch<E>(
    responder: &Responder,
    prefixes: &[IdPrefix],
    mut lookup: impl FnMut(&RecordId) -> Result<Option<Vec<u8>>, E>,
) -> Result<SyncResponse, E> {
    let mut records = Vec::new();
    let mut missing = Vec::new();
    let mut bytes = 0usize;
    'prefixes: for prefix in prefixes.iter().take(MAX_FETCH_IDS) {
        let mut found = false;
        for id in responder.resolve(prefix) {
            let Some(r) = lookup(&id)? else { continue };
            if r.len() > MAX_RECORD_BYTES {
                continue;
            }
            if records.len() == MAX_FETCH_IDS || bytes + r.len() > MAX_RESPONSE_BYTES {
                break 'prefixes;
            }
            bytes += r.len();
            records.push(r);
            found = true;
        }
        if !found {
            missing.push(*prefix);
        }
    }
    Ok(SyncResponse::Records { records, missing })
}

/// The prefixes of a `Fetch` that were neither answered (`received`: ids of the records that came
/// back and verified) nor declared `missing`: ask for them again.
pub fn not_sent(asked: &[IdPrefix], received: &[RecordId], missing: &[IdPrefix]) -> Vec<IdPrefix> {
    let answered: HashSet<IdPrefix> = received.iter().map(prefix_of).chain(missing.iter().copied()).collect();
    asked.iter().filter(|p| !answered.contains(*p)).copied().collect()
}

// ---------------------------------------------------------------------------------------------
// Serde helpers: byte fields as CBOR byte strings.

mod wire {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    /// Serializes as a byte string.
    struct BytesRef<'a>(&'a [u8]);

    impl Serialize for BytesRef<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// Deserializes from a byte string (or, for self-describing formats without one, a sequence
    /// of integers).
    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
                    while let Some(b) = seq.next_element::<u8>()? {
                        v.push(b);
                    }
                    Ok(ByteBuf(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    pub mod bytes {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            BytesRef(v).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            Ok(ByteBuf::deserialize(d)?.0)
        }
    }

    pub mod opt_bytes {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            v.as_deref().map(BytesRef).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            Ok(Option::<ByteBuf>::deserialize(d)?.map(|b| b.0))
        }
    }

    pub mod bytes_list {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|b| BytesRef(b)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            Ok(Vec::<ByteBuf>::deserialize(d)?.into_iter().map(|b| b.0).collect())
        }
    }

    /// Id prefixes, each a byte string of exactly `PREFIX_LEN` bytes.
    pub mod prefixes {
        use super::super::IdPrefix;
        use super::*;

        pub fn serialize<S: Serializer>(v: &[IdPrefix], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|p| BytesRef(p)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IdPrefix>, D::Error> {
            Vec::<ByteBuf>::deserialize(d)?
                .into_iter()
                .map(|b| {
                    b.0.as_slice().try_into().map_err(|_| de::Error::invalid_length(b.0.len(), &"an 8-byte id prefix"))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use libp2p::StreamProtocol;
    use libp2p::request_response::{Codec as _, cbor};
    use proptest::prelude::*;

    use super::*;

    type Item = (u64, RecordId);

    const T0: u64 = 1_700_000_000;

    /// A pseudo-random id for `n` (splitmix64), distinct for distinct `n`.
    fn id_of(n: u64) -> RecordId {
        let mut out = [0u8; 32];
        let mut x = n;
        for chunk in out.chunks_mut(8) {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes());
        }
        RecordId(out)
    }

    /// Item `n`: three records a second, so timestamps tie.
    fn item(n: u64) -> Item {
        (T0 + n / 3, id_of(n))
    }

    fn items(ns: impl IntoIterator<Item = u64>) -> Vec<Item> {
        let mut v: Vec<Item> = ns.into_iter().map(item).collect();
        v.sort();
        v
    }

    fn ids(v: &[Item]) -> BTreeSet<RecordId> {
        v.iter().map(|(_, id)| *id).collect()
    }

    struct Outcome {
        have: Vec<RecordId>,
        need: Vec<IdPrefix>,
        complete: bool,
        stats: SyncStats,
        /// Largest negentropy message (request, response).
        max_msg: (usize, usize),
    }

    /// Frame limits (initiator, responder).
    type Frames = (usize, usize);
    /// The production limits.
    const PROD: Frames = (FRAME_SIZE_LIMIT, RESPONSE_FRAME_SIZE_LIMIT);
    /// The smallest negentropy allows, on both sides: many cut frames.
    const SMALL: Frames = (4096, 4096);

    /// One in-process session: `a` initiates, `b` responds.
    fn run(a: Vec<Item>, b: Vec<Item>, frames: Frames) -> Outcome {
        let responder = Responder::with_frame_limit(b, frames.1).unwrap();
        let (mut rec, mut req) = Reconciler::start_with("north-end".into(), 42, a, frames.0).unwrap();
        let (mut max_req, mut max_resp) = (0, 0);
        loop {
            validate_request(&req).unwrap();
            let SyncRequest::Reconcile { msg, scope, session, .. } = &req else { panic!("not a reconcile: {req:?}") };
            assert_eq!((scope.as_str(), *session), ("north-end", 42));
            max_req = max_req.max(msg.len());
            let reply = respond(&responder, msg).unwrap();
            max_resp = max_resp.max(reply.as_ref().map_or(0, Vec::len));
            match rec.on_response(reply).unwrap() {
                Step::Continue(next) => req = next,
                Step::Done { have, need, complete } => {
                    return Outcome { have, need, complete, stats: rec.stats(), max_msg: (max_req, max_resp) };
                }
            }
        }
    }

    /// (have, need) as the initiator `a` should learn them: ids, and prefixes of ids.
    fn expect(a: &[Item], b: &[Item]) -> (Vec<RecordId>, Vec<IdPrefix>) {
        let (sa, sb) = (ids(a), ids(b));
        let mut need: Vec<IdPrefix> = sb.difference(&sa).map(prefix_of).collect();
        need.sort_unstable();
        (sa.difference(&sb).copied().collect(), need)
    }

    fn is_malformed(r: Result<Option<Vec<u8>>, SyncError>) -> bool {
        matches!(r, Err(SyncError::BadMessage(_) | SyncError::Negentropy(_)))
    }

    fn check(a: Vec<Item>, b: Vec<Item>, frames: Frames) -> Outcome {
        let (have, need) = expect(&a, &b);
        let out = run(a, b, frames);
        assert!(out.complete);
        assert_eq!(out.have, have, "have");
        assert_eq!(out.need, need, "need");
        assert!(out.max_msg.0 <= frames.0 && out.max_msg.1 <= frames.1, "{:?} over {frames:?}", out.max_msg);
        out
    }

    #[test]
    fn known_symmetric_difference() {
        let a = items((0..100).chain(200..210));
        let b = items((0..100).chain(300..305));
        let out = check(a, b, PROD);
        assert_eq!(out.have.len(), 10);
        assert_eq!(out.need.len(), 5);
        assert!(out.have.contains(&id_of(205)) && out.need.contains(&prefix_of(&id_of(302))));
    }

    #[test]
    fn identical_sets_exchange_almost_nothing() {
        let out = check(items(0..10_000), items(0..10_000), PROD);
        assert!(out.have.is_empty() && out.need.is_empty());
        assert_eq!(out.stats.rounds, 1);
        let total = out.stats.bytes_sent + out.stats.bytes_received;
        assert!(total < 1024, "{total} bytes for identical sets");
    }

    #[test]
    fn empty_sets() {
        let out = check(vec![], vec![], PROD);
        assert!(out.have.is_empty() && out.need.is_empty());
    }

    #[test]
    fn empty_initiator_against_full_responder() {
        let out = check(vec![], items(0..10_000), PROD);
        assert_eq!(out.need.len(), 10_000);
        // 10,000 prefixes of 8 bytes (320 kB as full ids) fit one frame of 250 kB.
        assert_eq!(out.stats.rounds, 1, "{:?}", out.stats);
        assert!(out.stats.bytes_received < 10_000 * 8 + 100, "{:?}", out.stats);
    }

    #[test]
    fn full_initiator_against_empty_responder() {
        let out = check(items(0..10_000), vec![], PROD);
        assert_eq!(out.have.len(), 10_000);
        // The initiator lists its own ids locally: nothing big crosses the wire.
        assert!(out.stats.bytes_sent + out.stats.bytes_received < 2048, "{:?}", out.stats);
    }

    #[test]
    fn one_percent_difference_both_ways_in_10k() {
        // 100 records only on each side.
        let a = items((0..9_900).chain(20_000..20_100));
        let b = items((0..9_900).chain(30_000..30_100));
        for frames in [PROD, SMALL] {
            let out = check(a.clone(), b.clone(), frames);
            assert_eq!((out.have.len(), out.need.len()), (100, 100));
            let total = out.stats.bytes_sent + out.stats.bytes_received;
            // Sending every id would be 320 kB.
            assert!(total < 64 * 1024, "frames {frames:?}: {:?}", out.stats);
        }
    }

    #[test]
    fn scattered_one_percent_in_10k() {
        // Every 100th record is missing on one side, alternately.
        let a: Vec<Item> = items((0..10_000).filter(|n| n % 200 != 0));
        let b: Vec<Item> = items((0..10_000).filter(|n| n % 200 != 100));
        for frames in [PROD, SMALL] {
            let out = check(a.clone(), b.clone(), frames);
            assert_eq!((out.have.len(), out.need.len()), (50, 50));
            if frames == PROD {
                // At 10,000 items the leaves hold 2 or 3 items and most bytes are the
                // initiator's fingerprints (16 for each differing range of about 39 items); the
                // id lists are 8-byte prefixes.
                let total = out.stats.bytes_sent + out.stats.bytes_received;
                assert!(total < 100 * 420, "{:?}", out.stats);
                assert!(out.stats.bytes_received < 100 * 100, "{:?}", out.stats);
            }
        }
    }

    #[test]
    fn session_cut_at_max_rounds_is_partial_and_the_next_one_continues() {
        // With 4 kB frames about 480 prefixes fit a round (the responder lets negentropy write 16 kB
        // before compacting), so 40,000 need more than MAX_ROUNDS rounds.
        let b = items(0..40_000);
        let mut a: Vec<Item> = Vec::new();
        let mut sessions = 0;
        loop {
            sessions += 1;
            let out = run(a.clone(), b.clone(), SMALL);
            assert!(out.stats.rounds <= MAX_ROUNDS);
            assert!(out.have.is_empty());
            let (_, need) = expect(&a, &b);
            let need: BTreeSet<IdPrefix> = need.into_iter().collect();
            assert!(out.need.iter().all(|p| need.contains(p)), "need lists an id we have");
            // "Fetch" them.
            let fetched: BTreeSet<IdPrefix> = out.need.iter().copied().collect();
            a.extend(b.iter().filter(|(_, id)| fetched.contains(&prefix_of(id))));
            if out.complete {
                assert_eq!(out.need.len(), need.len());
                break;
            }
            assert!(!out.need.is_empty(), "a partial session must make progress");
        }
        assert!(sessions >= 2);
        assert_eq!(ids(&a), ids(&b));
    }

    #[test]
    fn input_order_and_duplicates_do_not_matter() {
        let mut a = items(0..500);
        a.reverse();
        a.extend(items(0..50));
        let b = items(10..520);
        let out = check(a, b, PROD);
        assert_eq!((out.have.len(), out.need.len()), (10, 20));
    }

    #[test]
    fn max_timestamp_is_clamped_consistently() {
        let mut a = items(0..100);
        let mut b = items(0..100);
        a.push((u64::MAX, id_of(1_000)));
        a.push((u64::MAX - 1, id_of(1_001)));
        b.push((u64::MAX, id_of(1_002)));
        b.push((u64::MAX, id_of(1_001)));
        let out = check(a, b, PROD);
        assert_eq!(out.have, vec![id_of(1_000)]);
        assert_eq!(out.need, vec![prefix_of(&id_of(1_002))]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let responder = Responder::new(items(0..1_000)).unwrap();
        assert_eq!(respond(&responder, &[]), Err(SyncError::UnsupportedVersion { got: None }));
        assert_eq!(respond(&responder, b"hello"), Err(SyncError::UnsupportedVersion { got: Some(b'h') }));
        // A future negentropy version is refused, not mistaken for "nothing to say".
        assert_eq!(respond(&responder, &[0x62, 1, 2]), Err(SyncError::UnsupportedVersion { got: Some(0x62) }));
        // Unknown mode.
        assert!(is_malformed(respond(&responder, &[0x61, 0, 0, 7])));
        // An id list claiming far more ids than the message holds.
        assert!(is_malformed(respond(&responder, &[0x61, 0, 0, 2, 0xff, 0xff, 0x7f, 1])));
        // An id list whose last prefix is cut short.
        assert!(is_malformed(respond(&responder, &[0x61, 0, 0, 2, 1, 1, 2, 3])));
        // Truncated fingerprint.
        assert!(is_malformed(respond(&responder, &[0x61, 0, 0, 1, 1, 2, 3])));
        // Bound with an id longer than 32 bytes.
        let mut m = vec![0x61, 5, 40];
        m.extend([9u8; 40]);
        assert!(is_malformed(respond(&responder, &m)));
        // A number over 64 bits, and one cut short.
        assert!(is_malformed(respond(&responder, &[0x61, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])));
        assert!(is_malformed(respond(&responder, &[0x61, 0x81])));
        // Oversized.
        let big = vec![0x61; FRAME_SIZE_LIMIT + 1];
        assert!(matches!(respond(&responder, &big), Err(SyncError::MessageTooLarge { .. })));
        let e = respond(&responder, &[0x61, 0, 0, 9]).unwrap_err();
        assert_eq!(e.to_refusal(), SyncResponse::refused(codes::BAD_MESSAGE, e.to_string()));
    }

    #[test]
    fn hostile_responder_ends_the_session_with_an_error() {
        let (mut rec, _) = Reconciler::start("global", items(0..1_000)).unwrap();
        assert!(is_malformed(rec.on_response(Some(vec![0x61, 0, 0, 3])).map(|_| None)));
        assert!(matches!(rec.on_response(None), Err(SyncError::Protocol(_))));

        let (mut rec, _) = Reconciler::start("global", items(0..1_000)).unwrap();
        let big = vec![0x61; RESPONSE_FRAME_SIZE_LIMIT + 1];
        assert!(matches!(rec.on_response(Some(big)), Err(SyncError::MessageTooLarge { .. })));

        let (mut rec, _) = Reconciler::start("global", vec![]).unwrap();
        assert_eq!(rec.on_response(Some(vec![])), Err(SyncError::UnsupportedVersion { got: None }));
    }

    #[test]
    fn start_refuses_a_bad_scope() {
        assert!(matches!(Reconciler::start("", vec![]), Err(SyncError::BadScope { .. })));
        assert!(matches!(Reconciler::start("x".repeat(81), vec![]), Err(SyncError::BadScope { .. })));
        assert!(Reconciler::start("x".repeat(80), vec![]).is_ok());
    }

    #[test]
    fn sessions_differ() {
        let (a, _) = Reconciler::start("global", vec![]).unwrap();
        let (b, _) = Reconciler::start("global", vec![]).unwrap();
        assert_ne!(a.session(), b.session());
    }

    #[test]
    fn request_validation() {
        let ok = SyncRequest::Reconcile { scope: "global".into(), session: 1, round: 0, msg: vec![0x61] };
        assert_eq!(validate_request(&ok), Ok(()));
        let bad_scope = |scope: &str| SyncRequest::Reconcile { scope: scope.into(), session: 1, round: 0, msg: vec![] };
        for s in ["", "a\nb", &"s".repeat(MAX_SCOPE_LEN + 1)] {
            let e = validate_request(&bad_scope(s)).unwrap_err();
            assert_eq!(e.code(), codes::BAD_SCOPE, "{s:?}");
        }
        let late = SyncRequest::Reconcile { scope: "global".into(), session: 1, round: MAX_ROUNDS, msg: vec![] };
        assert_eq!(validate_request(&late).unwrap_err().code(), codes::TOO_MANY_ROUNDS);
        let big =
            SyncRequest::Reconcile { scope: "g".into(), session: 1, round: 0, msg: vec![0; FRAME_SIZE_LIMIT + 1] };
        assert_eq!(validate_request(&big).unwrap_err().code(), codes::MESSAGE_TOO_LARGE);

        let fetch = |n: u64| SyncRequest::Fetch {
            scope: "global".into(),
            prefixes: (0..n).map(|n| prefix_of(&id_of(n))).collect(),
        };
        assert_eq!(validate_request(&fetch(MAX_FETCH_IDS as u64)), Ok(()));
        assert_eq!(
            validate_request(&fetch(MAX_FETCH_IDS as u64 + 1)),
            Err(SyncError::TooManyIds { count: MAX_FETCH_IDS + 1, max: MAX_FETCH_IDS })
        );
        let no_scope = SyncRequest::Fetch { scope: String::new(), prefixes: vec![] };
        assert_eq!(validate_request(&no_scope).unwrap_err().code(), codes::BAD_SCOPE);

        let push = |n: usize, len: usize| SyncRequest::Push { records: vec![vec![0u8; len]; n] };
        assert_eq!(validate_request(&push(MAX_PUSH_RECORDS, 600)), Ok(()));
        assert_eq!(validate_request(&push(MAX_PUSH_RECORDS + 1, 600)).unwrap_err().code(), codes::TOO_MANY_RECORDS);
        assert_eq!(validate_request(&push(1, MAX_RECORD_BYTES + 1)).unwrap_err().code(), codes::RECORD_TOO_LARGE);
        // 256 records of 4 kB: 1 MiB, over MAX_PUSH_BYTES.
        assert_eq!(validate_request(&push(MAX_PUSH_RECORDS, 4096)).unwrap_err().code(), codes::TOO_MANY_BYTES);

        let too_many = SyncResponse::Records { records: vec![], missing: vec![[7; PREFIX_LEN]; 300] };
        assert_eq!(validate_response(&too_many).unwrap_err().code(), codes::TOO_MANY_IDS);
    }

    #[test]
    fn fetch_answer_respects_the_byte_budget() {
        // The responder holds every third id asked for only in its set, not in its store.
        let ids: Vec<RecordId> = (0..MAX_FETCH_IDS as u64).map(id_of).collect();
        let responder = Responder::new(items(0..MAX_FETCH_IDS as u64)).unwrap();
        let asked: Vec<IdPrefix> = ids.iter().map(prefix_of).collect();
        // Records are 10 kB, so about 97 fit in MAX_RESPONSE_BYTES.
        let resp = answer_fetch(&responder, &asked, |id| {
            let n = ids.iter().position(|x| x == id).unwrap();
            Ok::<_, ()>((n % 3 != 0).then(|| vec![n as u8; 10_000]))
        })
        .unwrap();
        validate_response(&resp).unwrap();
        let SyncResponse::Records { records, missing } = resp else { panic!() };
        let total: usize = records.iter().map(Vec::len).sum();
        assert!(total <= MAX_RESPONSE_BYTES && total + 10_000 > MAX_RESPONSE_BYTES);
        let received: Vec<RecordId> =
            ids.iter().enumerate().filter(|(n, _)| n % 3 != 0).map(|(_, id)| *id).take(records.len()).collect();
        let again = not_sent(&asked, &received, &missing);
        assert!(!again.is_empty());
        // The unsent ones are the tail of the request; none is declared missing.
        let got: Vec<IdPrefix> = received.iter().map(prefix_of).collect();
        assert!(again.iter().all(|p| !missing.contains(p) && !got.contains(p)));
        assert_eq!(received.len() + missing.len() + again.len(), asked.len());
        // A prefix the responder does not know is missing without a lookup.
        let resp = answer_fetch(&responder, &[[0xee; PREFIX_LEN]], |_| Err("looked up")).unwrap();
        assert_eq!(resp, SyncResponse::Records { records: vec![], missing: vec![[0xee; PREFIX_LEN]] });

        assert_eq!(answer_fetch(&responder, &asked[..1], |_| Err("disk")), Err("disk"));
    }

    #[test]
    fn fetch_by_prefix_returns_every_record_sharing_it() {
        // Two ids with the same prefix (only an attacker grinding its own records makes these).
        let x = id_of(1);
        let mut y = id_of(2);
        y.0[..PREFIX_LEN].copy_from_slice(&x.0[..PREFIX_LEN]);
        let responder = Responder::new(vec![(T0, x), (T0 + 1, y), (T0 + 2, id_of(3))]).unwrap();
        assert_eq!(responder.resolve(&prefix_of(&x)).count(), 2);
        assert_eq!(responder.resolve(&prefix_of(&id_of(3))).collect::<Vec<_>>(), vec![id_of(3)]);
        assert_eq!(responder.resolve(&prefix_of(&id_of(4))).count(), 0);
        let resp = answer_fetch(&responder, &[prefix_of(&x)], |id| Ok::<_, ()>(Some(id.0.to_vec()))).unwrap();
        let SyncResponse::Records { records, missing } = resp else { panic!() };
        assert_eq!(records.len(), 2);
        assert!(missing.is_empty());
        assert!(not_sent(&[prefix_of(&x)], &[x, y], &[]).is_empty());
    }

    #[test]
    fn fetch_and_push_batching() {
        let need: Vec<IdPrefix> = (0..1_000).map(|n| prefix_of(&id_of(n))).collect();
        let reqs = fetch_requests("global", &need);
        assert_eq!(reqs.len(), 4);
        assert!(reqs.iter().all(|r| validate_request(r).is_ok()));

        let recs: Vec<Vec<u8>> = (0..600).map(|n| vec![n as u8; if n % 2 == 0 { 600 } else { 9_000 }]).collect();
        let reqs = push_requests(recs);
        let mut count = 0;
        for r in &reqs {
            validate_request(r).unwrap();
            let SyncRequest::Push { records } = r else { panic!() };
            count += records.len();
        }
        assert_eq!(count, 600);
    }

    // --- wire format, through the codec the swarm uses ----------------------------------------

    fn proto() -> StreamProtocol {
        StreamProtocol::new(PROTOCOL)
    }

    fn encode_request(req: &SyncRequest) -> Vec<u8> {
        let mut codec = cbor::codec::Codec::<SyncRequest, SyncResponse>::default();
        let mut buf = Vec::new();
        futures::executor::block_on(codec.write_request(&proto(), &mut buf, req.clone())).unwrap();
        buf
    }

    fn encode_response(resp: &SyncResponse) -> Vec<u8> {
        let mut codec = cbor::codec::Codec::<SyncRequest, SyncResponse>::default();
        let mut buf = Vec::new();
        futures::executor::block_on(codec.write_response(&proto(), &mut buf, resp.clone())).unwrap();
        buf
    }

    fn decode_request(bytes: &[u8]) -> std::io::Result<SyncRequest> {
        let mut codec = cbor::codec::Codec::<SyncRequest, SyncResponse>::default();
        futures::executor::block_on(codec.read_request(&proto(), &mut &bytes[..]))
    }

    fn decode_response(bytes: &[u8]) -> std::io::Result<SyncResponse> {
        let mut codec = cbor::codec::Codec::<SyncRequest, SyncResponse>::default();
        futures::executor::block_on(codec.read_response(&proto(), &mut &bytes[..]))
    }

    #[test]
    fn wire_round_trip_and_compact_bytes() {
        let reqs = [
            SyncRequest::Reconcile { scope: "north-end".into(), session: u64::MAX, round: 3, msg: vec![0x61; 1000] },
            SyncRequest::Fetch {
                scope: "north-end".into(),
                prefixes: (0..MAX_FETCH_IDS as u64).map(|n| prefix_of(&id_of(n))).collect(),
            },
            SyncRequest::Push { records: vec![vec![200u8; 600]; 10] },
        ];
        for r in &reqs {
            let bytes = encode_request(r);
            assert_eq!(&decode_request(&bytes).unwrap(), r);
        }
        // Byte strings, not arrays of integers.
        let rec = encode_request(&reqs[0]);
        // 50 bytes of framing (names, session, round, lengths) plus the scope.
        assert!(rec.len() <= 1000 + 50 + "north-end".len(), "{} bytes", rec.len());
        let fetch = encode_request(&reqs[1]);
        // 9 bytes a prefix.
        assert!(fetch.len() <= MAX_FETCH_IDS * 9 + 30 + "north-end".len(), "{} bytes", fetch.len());
        let push = encode_request(&reqs[2]);
        assert!(push.len() <= 10 * 603 + 20, "{} bytes", push.len());
        // A full frame fits a 64 KiB request even with the longest scope.
        let full = SyncRequest::Reconcile {
            scope: "s".repeat(MAX_SCOPE_LEN),
            session: u64::MAX,
            round: MAX_ROUNDS - 1,
            msg: vec![0xff; FRAME_SIZE_LIMIT],
        };
        assert!(encode_request(&full).len() <= 64 * 1024);

        let resps = [
            SyncResponse::Reconcile { msg: None },
            SyncResponse::Reconcile { msg: Some(vec![0x61, 1, 2]) },
            SyncResponse::Records { records: vec![vec![1; 700]; 3], missing: vec![[1; PREFIX_LEN], [2; PREFIX_LEN]] },
            SyncResponse::Pushed { accepted: 7 },
            SyncResponse::refused(codes::BUSY, "later"),
        ];
        for r in &resps {
            let bytes = encode_response(r);
            assert_eq!(&decode_response(&bytes).unwrap(), r);
            validate_response(r).unwrap();
        }
        assert!(encode_response(&resps[1]).len() <= 3 + 21);
        let full = SyncResponse::Reconcile { msg: Some(vec![0xff; RESPONSE_FRAME_SIZE_LIMIT]) };
        assert_eq!(encode_response(&full).len(), RESPONSE_FRAME_SIZE_LIMIT + 21);
    }

    #[test]
    fn wire_rejects_prefixes_of_the_wrong_length() {
        // A Fetch whose only prefix is 7 bytes: re-encode by hand from a valid one (a byte string
        // of 8 bytes is the header 0x48).
        let good = encode_request(&SyncRequest::Fetch { scope: "g".into(), prefixes: vec![[0xab; PREFIX_LEN]] });
        let pos = good.windows(2).position(|w| w == [0x48, 0xab]).unwrap();
        let mut bad = good[..pos].to_vec();
        bad.push(0x47);
        bad.extend(&good[pos + 1..pos + 1 + 7]);
        assert!(decode_request(&bad).is_err());
        let mut long = good[..pos].to_vec();
        long.push(0x49);
        long.extend(&good[pos + 1..]);
        long.push(0xab);
        assert!(decode_request(&long).is_err());
    }

    // --- compact messages ----------------------------------------------------------------------

    fn storage(v: Vec<Item>) -> NegentropyStorageVector {
        build_storage(v).unwrap()
    }

    /// A negentropy message with id lists, as the responder writes it.
    fn listed(b: Vec<Item>, query_from: Vec<Item>) -> Vec<u8> {
        let a = storage(query_from);
        let query = Negentropy::borrowed(&a, 0).unwrap().initiate().unwrap();
        let b = storage(b);
        Negentropy::borrowed(&b, 0).unwrap().reconcile(&query).unwrap()
    }

    #[test]
    fn varints_round_trip_and_are_bounded() {
        for n in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, n);
            assert!(buf.len() <= MAX_VARINT_LEN);
            let mut rest = &buf[..];
            assert_eq!(read_varint(&mut rest), Ok(n));
            assert!(rest.is_empty());
        }
        // Negentropy's own encoding of 300 reads the same.
        assert_eq!(read_varint(&mut &[0x82, 0x2c][..]), Ok(300));
        assert!(read_varint(&mut &[0x80][..]).is_err());
        assert!(read_varint(&mut &[][..]).is_err());
        assert!(read_varint(&mut &[0xff; 11][..]).is_err());
        // 2^64 does not fit.
        assert!(read_varint(&mut &[0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..]).is_err());
    }

    #[test]
    fn compact_then_expand_gives_back_the_message() {
        // 20 items, so the responder answers with one id list; the receiver holds all of them.
        let b = items(0..20);
        let msg = listed(b.clone(), vec![]);
        let small = compact(&msg).unwrap();
        // 20 ids of 32 bytes became 20 prefixes of 8.
        assert_eq!(msg.len() - small.len(), 20 * (ID_SIZE - PREFIX_LEN));
        assert_eq!(expand(&small, &storage(b.clone())).unwrap(), msg);
        // A receiver that lacks some gets placeholders for exactly those.
        let mut partial = b.clone();
        partial.remove(5);
        let expanded = expand(&small, &storage(partial)).unwrap();
        assert_eq!(expanded.len(), msg.len());
        let diff: Vec<usize> = (0..msg.len()).filter(|&i| msg[i] != expanded[i]).collect();
        assert!(!diff.is_empty() && diff.iter().all(|&i| expanded[i] == 0));
        assert!(expanded.windows(ID_SIZE).any(|w| w == placeholder(&b[5].1.0)));
        // Fingerprint-only messages are unchanged both ways.
        let fps = Negentropy::borrowed(&storage(items(0..1_000)), 0).unwrap().initiate().unwrap();
        assert_eq!(compact(&fps).unwrap(), fps);
        assert_eq!(expand(&fps, &storage(vec![])).unwrap(), fps);
    }

    #[test]
    fn expand_matches_only_inside_the_listed_range() {
        // The receiver's item with the listed prefix lies outside the listed range (other
        // timestamp): it is not taken for the peer's.
        let x = id_of(1);
        let ours = storage(vec![(T0 + 1_000, x)]);
        let mut msg = vec![0x61];
        // Bound (timestamp T0 + 10, no id), id list of one prefix.
        write_varint(&mut msg, T0 + 10 + 1);
        msg.extend([0, MODE_ID_LIST as u8, 1]);
        msg.extend(prefix_of(&x));
        let expanded = expand(&msg, &ours).unwrap();
        assert!(expanded.ends_with(&placeholder(&x.0)));
        // Inside the range it is.
        let ours = storage(vec![(T0 + 5, x)]);
        assert!(expand(&msg, &ours).unwrap().ends_with(&x.0));
    }

    #[test]
    fn responder_answers_fit_the_frame_and_carry_more_ids() {
        // An empty initiator against 40,000 items: negentropy lists them as ids. Compacted, about
        // 27,000 fit a 250 kB frame (7,800 did as full ids).
        let out = check(vec![], items(0..40_000), PROD);
        assert_eq!(out.need.len(), 40_000);
        assert!(out.stats.rounds <= 3, "{:?}", out.stats);
        assert!(out.max_msg.1 > RESPONSE_FRAME_SIZE_LIMIT / 2, "{:?}", out.max_msg);
        // With frames at negentropy's minimum the stretched attempt overflows and the responder
        // falls back to smaller limits; answers still fit.
        let out = check(vec![], items(0..3_000), SMALL);
        assert_eq!(out.need.len(), 3_000);
    }

    // --- properties --------------------------------------------------------------------------

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// have/need are exactly the set differences, for random small sets (membership: only A,
        /// only B, both) with tied timestamps, at both frame limits.
        #[test]
        fn have_need_are_the_set_differences(
            members in prop::collection::vec((0u8..3, 0u64..40), 0..400),
            small_frame in any::<bool>(),
        ) {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for (n, (side, t)) in members.into_iter().enumerate() {
                let it = (T0 + t, id_of(n as u64));
                if side != 1 { a.push(it); }
                if side != 0 { b.push(it); }
            }
            let (have, need) = expect(&a, &b);
            let out = run(a, b, if small_frame { SMALL } else { PROD });
            prop_assert!(out.complete);
            prop_assert_eq!(out.have, have);
            prop_assert_eq!(out.need, need);
        }

        /// Compacting a real message and expanding it against the sender's own items gives it back.
        #[test]
        fn compact_round_trip(n in 0u64..200, skip in 0u64..40) {
            let b = items((0..n).filter(|i| i % 41 != skip));
            let msg = listed(b.clone(), items(0..n));
            prop_assert_eq!(expand(&compact(&msg).unwrap(), &storage(b)).unwrap(), msg);
        }

        /// Random bytes never panic the responder or the initiator.
        #[test]
        fn random_messages_never_panic(mut msg in prop::collection::vec(any::<u8>(), 0..2000), versioned in any::<bool>()) {
            if versioned && !msg.is_empty() {
                msg[0] = 0x61;
            }
            let responder = Responder::new(items(0..300)).unwrap();
            let _ = respond(&responder, &msg);
            let (mut rec, _) = Reconciler::start("global", items(100..400)).unwrap();
            let _ = rec.on_response(Some(msg));
        }

        /// Real messages with a few bytes changed never panic either side.
        #[test]
        fn mutated_messages_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let responder = Responder::new(items(0..3_000)).unwrap();
            let (mut rec, req) = Reconciler::start("global", items(50..3_050)).unwrap();
            let SyncRequest::Reconcile { mut msg, .. } = req else { panic!() };
            for (i, b) in &flips {
                let i = i.index(msg.len());
                if i > 0 { msg[i] = *b; }
            }
            let _ = respond(&responder, &msg);
            // And a mutated real reply to the initiator.
            let (_, req) = Reconciler::start("global", items(50..3_050)).unwrap();
            let SyncRequest::Reconcile { msg, .. } = req else { panic!() };
            if let Ok(Some(mut reply)) = respond(&responder, &msg) {
                for (i, b) in &flips {
                    let i = i.index(reply.len());
                    if i > 0 { reply[i] = *b; }
                }
                let _ = rec.on_response(Some(reply));
            }
        }
    }
}
