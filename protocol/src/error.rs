//! The one error type for everything that can be wrong with a record.
//!
//! Every rejection has its own variant and a stable, machine-readable [`RecordError::code`]: the node
//! counts rejections by code, the API returns the code to bots, and `docs/test-vectors.json` names the
//! code each invalid vector must get. Codes never change meaning; new rules get new codes.
//!
//! Error messages never contain secret material, and they quote hostile input only as numbers or
//! field names, never as raw text (a record's text could carry terminal escapes).

use thiserror::Error;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes do not follow the encoding (truncated, trailing bytes, a bad tag or length, invalid UTF-8).
    #[error("malformed record at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: &'static str },

    /// The record is larger than [`crate::limits::MAX_RECORD_BYTES`].
    #[error("record is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },

    /// The format version byte is not one this implementation speaks.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),

    /// The record type byte is not a known type.
    #[error("unknown record type {0}")]
    UnknownType(u8),

    /// 32 bytes that are not a valid ed25519 public key (not a point on the curve).
    #[error("the {field} is not a valid ed25519 public key")]
    InvalidKey { field: &'static str },

    /// A public key of small order: anyone can forge signatures that verify under it.
    #[error("the {field} is a weak (small-order) ed25519 key")]
    WeakKey { field: &'static str },

    /// A signature does not verify (under `verify_strict`).
    #[error("signature {index} does not verify")]
    BadSignature { index: usize },

    /// A co-signed record carries fewer signatures than its type needs.
    #[error("record carries {have} signature(s), its type needs {need}")]
    MissingSignature { have: usize, need: usize },

    /// The record was expected from one author (the peer that sent it, a deal party) and names another.
    #[error("record is authored by {found}, expected {expected}")]
    AuthorMismatch { expected: String, found: String },

    /// A withdrawal or revocation names a record of someone else.
    #[error("a {record_type} may only name the author's own records")]
    NotOwnRecord { record_type: &'static str },

    /// A record that must involve two different people names the author twice.
    #[error("the {field} must be someone other than the author")]
    SelfReference { field: &'static str },

    /// `created_at` is further in the future than the allowed clock skew.
    #[error("created_at {created_at} is more than {max_skew} s ahead of now ({now})")]
    FromFuture { created_at: u64, now: u64, max_skew: u64 },

    /// A listing or vouch whose validity ended.
    #[error("expired at {expired_at}, now is {now}")]
    Expired { expired_at: u64, now: u64 },

    /// A geohash longer than [`crate::limits::MAX_GEOHASH_LEN`]: more precise than troc ever shares.
    #[error("location geohash has {len} characters, at most {max} are allowed")]
    LocationTooPrecise { len: usize, max: usize },

    /// A text field over its byte limit.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    FieldTooLong { field: &'static str, len: usize, max: usize },

    /// A required text field is empty.
    #[error("{field} must not be empty")]
    FieldEmpty { field: &'static str },

    /// A text field with forbidden characters (control characters, bidi overrides, newlines in a
    /// one-line field).
    #[error("{field} contains a forbidden character")]
    ForbiddenCharacter { field: &'static str },

    /// A list with more items than allowed.
    #[error("{field} has {len} items, at most {max} are allowed")]
    TooManyItems { field: &'static str, len: usize, max: usize },

    /// A field whose value breaks a rule of the specification (the reason says which).
    #[error("{field}: {reason}")]
    InvalidValue { field: &'static str, reason: &'static str },
}

impl RecordError {
    /// A stable, snake_case code for counting, for the API and for the test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Malformed { .. } => "malformed",
            RecordError::TooLarge { .. } => "too_large",
            RecordError::UnknownVersion(_) => "unknown_version",
            RecordError::UnknownType(_) => "unknown_type",
            RecordError::InvalidKey { .. } => "invalid_key",
            RecordError::WeakKey { .. } => "weak_key",
            RecordError::BadSignature { .. } => "bad_signature",
            RecordError::MissingSignature { .. } => "missing_signature",
            RecordError::AuthorMismatch { .. } => "author_mismatch",
            RecordError::NotOwnRecord { .. } => "not_own_record",
            RecordError::SelfReference { .. } => "self_reference",
            RecordError::FromFuture { .. } => "from_future",
            RecordError::Expired { .. } => "expired",
            RecordError::LocationTooPrecise { .. } => "location_too_precise",
            RecordError::FieldTooLong { .. } => "field_too_long",
            RecordError::FieldEmpty { .. } => "field_empty",
            RecordError::ForbiddenCharacter { .. } => "forbidden_character",
            RecordError::TooManyItems { .. } => "too_many_items",
            RecordError::InvalidValue { .. } => "invalid_value",
        }
    }

    /// Every code, in a stable order (for counters that want a slot per code).
    pub const CODES: &'static [&'static str] = &[
        "malformed",
        "too_large",
        "unknown_version",
        "unknown_type",
        "invalid_key",
        "weak_key",
        "bad_signature",
        "missing_signature",
        "author_mismatch",
        "not_own_record",
        "self_reference",
        "from_future",
        "expired",
        "location_too_precise",
        "field_too_long",
        "field_empty",
        "forbidden_character",
        "too_many_items",
        "invalid_value",
    ];

    pub(crate) fn malformed(offset: usize, reason: &'static str) -> Self {
        RecordError::Malformed { offset, reason }
    }

    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        RecordError::InvalidValue { field, reason }
    }
}
