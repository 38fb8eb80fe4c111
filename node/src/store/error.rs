//! The store's errors: one typed error for every way a store call can fail.
//!
//! sled's own error is wrapped in [`DbError`], an opaque type, so that nothing outside this module
//! ever names a sled type (the store is the only code that touches sled; see `ARCHITECTURE.md`).

use std::path::PathBuf;

use thiserror::Error;
use troc_protocol::{RecordError, RecordId};

/// What can go wrong in the store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database at `path` could not be opened (locked by another process, unreadable, ...).
    #[error("could not open the store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    /// A read or write of the database failed (I/O error, or sled reported corruption).
    #[error("store database error")]
    Db(#[from] DbError),
    /// The database was written by a newer troc, with a schema this version does not know.
    #[error("the store has schema version {found}; this troc knows up to {supported}: upgrade troc")]
    NewerSchema { found: u32, supported: u32 },
    /// The database has a schema version this troc cannot migrate from.
    #[error("the store has schema version {found}, which this troc cannot migrate")]
    UnsupportedSchema { found: u32 },
    /// A bookkeeping entry (schema version, counter ...) has bytes that make no sense.
    #[error("the store's {what} entry is corrupt")]
    CorruptMeta { what: &'static str },
    /// A stored record's bytes no longer decode or verify, or do not hash to the id they are stored
    /// under. `check_and_repair` removes such records.
    #[error("the outbox is full: too many messages waiting for an offline peer")]
    OutboxFull,
    #[error("too many {what} kept on this node")]
    LocalFull { what: &'static str },
    #[error("stored record {id} is corrupt")]
    CorruptRecord {
        id: RecordId,
        #[source]
        source: CorruptReason,
    },
}

/// Why a stored record is considered corrupt.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CorruptReason {
    /// The bytes do not decode, or do not verify.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The bytes decode to a record with another id than the key they are stored under.
    #[error("the bytes are those of record {found}")]
    IdMismatch { found: RecordId },
    /// A record of another type was found where the index said this type would be.
    #[error("expected a {expected} record")]
    WrongType { expected: &'static str },
}

/// An error from the database engine. Opaque on purpose: callers only need its message and its
/// source chain, never the engine's types.
#[derive(Debug, Error)]
#[error(transparent)]
pub struct DbError(sled::Error);

impl From<sled::Error> for DbError {
    fn from(e: sled::Error) -> Self {
        DbError(e)
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(DbError(e))
    }
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
        }
    }
}
