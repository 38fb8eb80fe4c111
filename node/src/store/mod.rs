//! The node's store: every verified record, kept as its exact signed bytes in a sled database, with
//! the indexes the node queries.
//!
//! This is the only module that touches sled (see `ARCHITECTURE.md`); it exposes its own types and
//! [`StoreError`]. It is synchronous, like sled: async callers run it on a blocking thread.
//!
//! # Layout
//!
//! The `records` tree (`id32 → signed bytes`) is the source of truth. Every other tree is derived
//! from it by the apply rules and can be rebuilt by [`Store::check_and_repair`] (the `refused` set
//! partly: see `repair.rs`). sled copes badly with many trees (sled#1484), so there are ten, some
//! holding several kinds of entries told apart by a prefix byte. Key layouts are in `keys.rs`:
//!
//! | tree        | key                                          | value                      |
//! |-------------|----------------------------------------------|----------------------------|
//! | `meta`      | `"schema_version"`, `"clean_shutdown"`, `"needs_repair"` | u32 BE, flags  |
//! | `records`   | `id32`                                       | signed bytes               |
//! | `refused`   | `id32`                                       | `expiry8 ‖ author32`       |
//! | `heads`     | `0x01 ‖ author32 ‖ key16` (current listing)  | `id32 ‖ revision4 ‖ valid_until8` |
//! |             | `0x02 ‖ author32 ‖ key16` (withdrawal)       | `id32`                     |
//! |             | `0x03 ‖ author32` (current profile)          | `id32 ‖ created_at8`       |
//! | `by_author` | `author32 ‖ created_at8 ‖ id32`              | `type1`                    |
//! | `by_scope`  | `scope ‖ 0x00 ‖ created_at8 ‖ id32`          | `expiry8` or empty         |
//! | `by_kind`   | `kind1 ‖ category1 ‖ created_at8 ‖ id32`     | `expiry8` (listings only)  |
//! | `by_expiry` | `0x01 ‖ expiry8 ‖ id32` (records), `0x02 ‖ expiry8 ‖ id32` (refused markers) | empty |
//! | `links`     | `0x01 ‖ party32 ‖ created_at8 ‖ id32` (proposal, agreement, extension) | `type1` |
//! |             | `0x02 ‖ deal id32 ‖ created_at8 ‖ id32` (deal steps, reviews)          | `type1` |
//! |             | `0x03 ‖ subject32 ‖ created_at8 ‖ id32` (reviews, commitments, vouches) | `type1` |
//! | `counts`    | `0x01` total, `0x02 ‖ author32`, `0x03 ‖ author32` live listings, `0x04 ‖ type1`, `0x05` bytes, `0x06` live | u64 BE |
//!
//! Scope encoding: `0x01` for Global, `0x02 ‖ slug` for a community, then the 0x00 terminator.
//!
//! # Writes
//!
//! Every write that touches more than one tree runs in one sled transaction: [`Store::apply`] writes
//! a whole batch in one (or a few, for a huge batch), so a crash leaves either all of a batch's
//! records with their indexes or none. Writes are not flushed: the caller flushes at its commit
//! points ([`Store::flush`], [`Store::close`]). Writers (apply, prune, repair) also take a mutex, so
//! a repair never runs under a concurrent apply.
//!
//! # Reads
//!
//! A [`Signed`](troc_protocol::Signed) record only exists verified, so typed reads decode and verify the stored bytes
//! (batch verification for lists). [`Store::get_bytes`] serves the sync path and does not verify.
//! Bytes that fail (disk damage, sled trouble) are reported as [`StoreError::CorruptRecord`] by
//! `get`, skipped with a warning by list queries, and in both cases flag the store for a repair at
//! the next open.

mod apply;
mod error;
mod keys;
mod prune;
mod query;
mod repair;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tracing::{info, warn};
use troc_protocol::{Category, Kind, PublicKey, RecordId, RecordType};

pub use error::{CorruptReason, DbError, StoreError};

/// The schema version this code writes. Bump it with a migration step in `migrate`.
pub const SCHEMA_VERSION: u32 = 1;

/// The default sled page cache: sled's own default is 1 GiB, far too much for a neighbour's node.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How many records one apply transaction writes at most: a transaction buffers all its writes in
/// memory, so a huge batch is split (each part is still all-or-nothing).
const MAX_RECORDS_PER_TRANSACTION: usize = 4096;

/// Where and how to open the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database directory (created if missing).
    pub path: PathBuf,
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
    pub quotas: Quotas,
}

impl StoreConfig {
    /// The default configuration for a database in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig { path: path.into(), cache_bytes: DEFAULT_CACHE_BYTES, quotas: Quotas::default() }
    }
}

/// Limits that keep one author, or everyone together, from filling the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Listing addresses with a current revision, per author (an expired listing counts until
    /// `prune` removes it).
    pub max_live_listings_per_author: usize,
    /// Stored records per author, every type.
    pub max_records_per_author: usize,
    /// Stored records in all.
    pub max_total_records: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas { max_live_listings_per_author: 200, max_records_per_author: 5000, max_total_records: 1_000_000 }
    }
}

/// A sync scope: the set of records two peers reconcile together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Scope {
    /// Every public record that is not a listing: profiles, withdrawals, deal records, reviews,
    /// vouches, revocations.
    Global,
    /// The listings of one community (its slug).
    Community(String),
}

/// What [`Store::apply`] did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored. `scope` is its sync scope (`None` for private records: proposals). `replaced` is the
    /// record it replaced or removed: the superseded listing revision or profile, the listing a
    /// withdrawal withdrew, the record a revocation revoked.
    Stored { id: RecordId, scope: Option<Scope>, replaced: Option<RecordId> },
    /// Already stored.
    Duplicate,
    /// Valid, but no longer wanted: not stored.
    Stale(StaleReason),
    /// Refused by the store's own rules: not stored.
    Refused(RefuseReason),
}

impl Outcome {
    /// Whether the record was stored (and so is new to this node).
    pub fn is_stored(&self) -> bool {
        matches!(self, Outcome::Stored { .. })
    }
}

/// Why a valid record is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// Its id is known dead: a superseded revision, a withdrawn listing's revision, a revoked record.
    Refused,
    /// A listing whose address has been withdrawn.
    Withdrawn,
    /// A listing revision or profile older than the one stored.
    OlderRevision,
    /// A second withdrawal of an address already withdrawn.
    AlreadyWithdrawn,
    /// A listing or vouch expired at `now`, or a withdrawal past its retention (it would be
    /// pruned at once and has nothing left to refuse).
    Expired,
}

/// Why the store refuses a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// A quota is full.
    Quota(QuotaKind),
    /// A revocation of a stored record by someone else (valid records cannot do this).
    NotOwnRecord,
}

/// Which quota refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    LiveListings,
    AuthorRecords,
    TotalRecords,
}

/// Which live listings [`Store::listings`] returns. Every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingFilter {
    pub community: Option<String>,
    pub kind: Option<Kind>,
    pub category: Option<Category>,
    pub author: Option<PublicKey>,
    /// At most this many (newest first); `None` for all.
    pub limit: Option<usize>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub listings: u64,
    pub vouches: u64,
    pub withdrawals: u64,
    /// Refused-id markers aged out.
    pub markers: u64,
}

/// What [`Store::check_and_repair`] found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Records read and verified.
    pub checked: u64,
    /// Records removed because their bytes do not decode or verify, or their key is not their id.
    pub corrupt_removed: u64,
    /// Records removed because the apply rules would not keep them (a superseded revision or
    /// profile, a withdrawn listing, a revoked record still stored).
    pub inconsistent_removed: u64,
    /// Refused-id markers dropped because their bytes make no sense.
    pub bad_markers_removed: u64,
    /// Records kept, every index rebuilt from them.
    pub kept: u64,
}

/// Figures about the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub records: u64,
    /// Records per type, every type listed.
    pub by_type: Vec<(RecordType, u64)>,
    /// Listing addresses with a current revision.
    pub live_listings: u64,
    /// Refused-id markers.
    pub refused_ids: u64,
    /// Bytes of the stored records.
    pub record_bytes: u64,
    /// The database's size on disk.
    pub size_on_disk: u64,
}

/// The store. Cheap to clone: every clone shares one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    t: Trees,
    quotas: Quotas,
    path: PathBuf,
    /// Held by writers (apply, prune, repair). sled serialises transactions already; this also keeps
    /// a repair, which is not one transaction, from interleaving with other writes.
    write: Mutex<()>,
    /// What the repair run by `open` found, if one ran.
    open_repair: std::sync::OnceLock<RepairReport>,
    /// Apply transactions run so far (tests check that a batch is one transaction).
    #[cfg(test)]
    apply_transactions: std::sync::atomic::AtomicUsize,
}

/// The trees, opened once.
#[derive(Clone)]
struct Trees {
    meta: sled::Tree,
    records: sled::Tree,
    refused: sled::Tree,
    heads: sled::Tree,
    by_author: sled::Tree,
    by_scope: sled::Tree,
    by_kind: sled::Tree,
    by_expiry: sled::Tree,
    links: sled::Tree,
    counts: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Trees {
            meta: db.open_tree("meta")?,
            records: db.open_tree("records")?,
            refused: db.open_tree("refused")?,
            heads: db.open_tree("heads")?,
            by_author: db.open_tree("by_author")?,
            by_scope: db.open_tree("by_scope")?,
            by_kind: db.open_tree("by_kind")?,
            by_expiry: db.open_tree("by_expiry")?,
            links: db.open_tree("links")?,
            counts: db.open_tree("counts")?,
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).field("quotas", &self.inner.quotas).finish()
    }
}

impl Store {
    /// Opens (or creates) the store: initialises a new database, migrates an older schema, refuses a
    /// newer one, and runs [`Store::check_and_repair`] if the previous run did not [`Store::close`]
    /// cleanly or saw something inconsistent.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(&cfg.path)
            .cache_capacity(cfg.cache_bytes)
            .open()
            .map_err(|e| StoreError::Open { path: cfg.path.clone(), source: e.into() })?;
        let t = Trees::open(&db)?;
        let has_records = !t.records.is_empty();
        let mut repair = false;
        match read_version(&t.meta)? {
            None => {
                // A new database, or one whose meta was lost: start at the current schema, and
                // re-derive every index from whatever records there are.
                t.meta.insert(keys::META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
                repair = has_records;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema { found: v, supported: SCHEMA_VERSION });
            }
            Some(v) if v < SCHEMA_VERSION => {
                migrate(&t, v)?;
                repair = true;
            }
            Some(_) => {}
        }
        let clean = t.meta.remove(keys::META_CLEAN_SHUTDOWN)?.is_some();
        let flagged = t.meta.get(keys::META_NEEDS_REPAIR)?.is_some();
        if has_records && (!clean || flagged) {
            repair = true;
        }
        // Make "not cleanly closed" durable before anything else is written.
        db.flush()?;
        let inner = Inner {
            db,
            t,
            quotas: cfg.quotas,
            path: cfg.path,
            write: Mutex::new(()),
            open_repair: std::sync::OnceLock::new(),
            #[cfg(test)]
            apply_transactions: Default::default(),
        };
        let store = Store { inner: Arc::new(inner) };
        if repair {
            warn!(path = %store.inner.path.display(), clean, flagged, "store not closed cleanly: checking and repairing");
            let report = store.check_and_repair()?;
            info!(?report, "store repaired");
            let _ = store.inner.open_repair.set(report);
        }
        Ok(store)
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Flushes and marks the store as cleanly closed, so the next open skips the repair. Other
    /// clones may still write: their next write clears the mark again.
    pub fn close(self) -> Result<(), StoreError> {
        let _w = self.writer();
        self.inner.db.flush()?;
        self.inner.t.meta.insert(keys::META_CLEAN_SHUTDOWN, &[1u8])?;
        self.inner.db.flush()?;
        Ok(())
    }

    /// What the repair run by [`Store::open`] found, if the previous run did not close cleanly.
    pub fn open_repair(&self) -> Option<RepairReport> {
        self.inner.open_repair.get().copied()
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        self.inner.quotas
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        // A writer that panicked left no half-done state behind (transactions are atomic and a
        // repair is idempotent), so a poisoned lock is safe to take.
        self.inner.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the store for a repair at the next open (something inconsistent was seen).
    fn flag_repair(&self, why: &str) {
        warn!(why, "store inconsistency seen: a repair will run at the next open");
        if let Err(e) = self.inner.t.meta.insert(keys::META_NEEDS_REPAIR, &[1u8]) {
            warn!(error = %e, "could not flag the store for repair");
        }
    }
}

fn read_version(meta: &sled::Tree) -> Result<Option<u32>, StoreError> {
    match meta.get(keys::META_SCHEMA_VERSION)? {
        None => Ok(None),
        Some(v) => keys::u32_at(&v, 0)
            .filter(|_| v.len() == 4)
            .map(Some)
            .ok_or(StoreError::CorruptMeta { what: "schema version" }),
    }
}

/// The migration hook: brings a database from schema `from` up to [`SCHEMA_VERSION`], one step at a
/// time, recording each version reached (so an interrupted migration resumes where it stopped).
/// Indexes need no migrating: the open that follows a migration rebuilds them from the records. A
/// step is only needed when `records` or `refused` change shape.
fn migrate(t: &Trees, from: u32) -> Result<(), StoreError> {
    for v in from..SCHEMA_VERSION {
        migration_step(t, v)?;
        t.meta.insert(keys::META_SCHEMA_VERSION, &(v + 1).to_be_bytes())?;
    }
    Ok(())
}

/// One migration step, from schema `v` to `v + 1`. Version 1 is the first schema, so there is none
/// yet: the next one goes here as `1 => step_1_to_2(t),`.
fn migration_step(_t: &Trees, v: u32) -> Result<(), StoreError> {
    Err(StoreError::UnsupportedSchema { found: v })
}
