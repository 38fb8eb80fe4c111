//! The node's store: every verified record, kept as its exact signed bytes in a sled database, and
//! in memory every index the node queries (and the listing search index).
//!
//! This is the only module that touches sled (see `ARCHITECTURE.md`); it exposes its own types and
//! [`StoreError`]. It is synchronous, like sled: async callers run it on a blocking thread.
//!
//! # Layout (schema 2)
//!
//! sled keeps only what cannot be derived, in three trees (key layouts in `keys.rs`):
//!
//! | tree      | key                  | value                                              |
//! |-----------|----------------------|----------------------------------------------------|
//! | `meta`    | `"schema_version"`, `"clean_shutdown"`, `"needs_repair"` | u32 BE, flags  |
//! | `log`     | `seq8` (u64 BE)      | signed bytes: the source of truth                  |
//! | `refused` | `id32`               | `expiry8 ‖ author32`: refused-id markers           |
//!
//! Records are keyed by a sequence number in storing order, not by id: every new record goes to the
//! right edge of the tree, which keeps a write at one cached leaf whatever the store's size (random
//! id keys made each write page in a random leaf once the store outgrew sled's cache: 37–41 µs per
//! record at 100,000 records with a 16 MiB cache, against ~10 µs; see `docs/performance.md`). The id
//! of a record is the hash of its bytes, so nothing is lost.
//!
//! Everything else lives in memory (`mem.rs`): id → slot, the current revision of each listing
//! address, withdrawals, profiles, per-author and per-scope time orders, kind and category, expiry,
//! deal links, the counters the quotas read, the markers; and the [`SearchIndex`] of the current
//! listings. It is rebuilt from `log` and `refused` at every open (`repair.rs`): decoding only after
//! a clean close (the bytes were verified before they were written), decoding and verifying after a
//! crash or when something inconsistent was seen. Its size is bounded by the quotas (one slot per
//! stored record).
//!
//! # Writes
//!
//! [`Store::apply`] decides a batch against memory, writes it in one sled transaction over `log`
//! and `refused` (or a few, for a huge batch), and updates memory only once that committed (see
//! `apply.rs`): after a crash, the disk has all of a batch or none of it, and memory never shows
//! what the disk does not have. Writes are not flushed: the caller flushes at its commit points
//! ([`Store::flush`], [`Store::close`]); the writer flushes before acknowledging local records.
//! Writers (apply, prune, repair) take a mutex, so there is one at a time.
//!
//! # Reads
//!
//! Queries look up ids in memory, then read the bytes from `log`. A
//! [`Signed`](troc_protocol::Signed) record only exists verified, so typed reads decode and verify
//! the stored bytes (batch verification for lists). [`Store::get_bytes`] serves the sync path and
//! does not verify. Bytes that fail (disk damage, sled trouble) are reported as
//! [`StoreError::CorruptRecord`] by `get`, skipped with a warning by list queries, and in both cases
//! flag the store for a repair at the next open.

mod apply;
mod error;
mod keys;
mod local;
mod mem;
mod prune;
mod query;
mod repair;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};
use troc_protocol::{Body, Category, Kind, PublicKey, RecordId, RecordType, SignedRecord, Timestamp};

use crate::search::{Document, Query, QueryError, SearchIndex, SearchResults};
pub use error::{CorruptReason, DbError, StoreError};
pub use local::{OutboxEntry, OutboxKind, OutboxLimits};
use mem::Mem;

/// The schema version this code writes. Bump it with a migration step in `migrate`.
/// 1: records keyed by id, every index a sled tree. 2: records keyed by sequence number in `log`,
/// indexes in memory.
pub const SCHEMA_VERSION: u32 = 2;

/// The default sled page cache. sled's own default is 1 GiB, far too much for a neighbour's node;
/// the indexes are in memory now and new records go to one hot leaf, so sled's cache only serves
/// reads of record bytes (see `docs/performance.md`, section Memory: 8 MiB keeps a node holding
/// 100,000 listings under its memory target; a read that misses is a `pread` from the OS's cache).
pub const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

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
    /// A deal record naming an agreement (or proposal, or acknowledged step) this node does not
    /// have: not stored and not the sender's fault; catch-up brings it again once the agreement is
    /// here.
    UnknownDeal,
    /// A review (or review commitment) made before its deal ended: not stored yet (the record
    /// that ends the deal may still be on its way).
    DealNotEnded,
}

impl StaleReason {
    /// A stable code for counters and answers.
    pub fn code(self) -> &'static str {
        match self {
            StaleReason::Refused => "refused",
            StaleReason::Withdrawn => "withdrawn",
            StaleReason::OlderRevision => "older_revision",
            StaleReason::AlreadyWithdrawn => "already_withdrawn",
            StaleReason::Expired => "expired",
            StaleReason::UnknownDeal => "unknown_deal",
            StaleReason::DealNotEnded => "deal_not_ended",
        }
    }
}

/// Why the deal rules (`docs/protocol.md` section 14) refuse a record: each is a stable code,
/// counted, and the sender's fault (a peer that has the agreement can check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealRefusal {
    /// The author (or co-signer) is not a party of the deal the record names.
    NotAParty,
    /// A review or commitment whose subject is not the other party.
    WrongSubject,
    /// A second review (or commitment) by the same party for the same deal.
    DuplicateReview,
    /// A review that does not match its author's commitment for the deal.
    CommitmentMismatch,
    /// A review or commitment made more than 14 days after the deal ended.
    ReviewWindowClosed,
    /// A cancellation whose reason does not fit what it names (a proposal is declined or
    /// withdrawn; an agreement cancelled, not shown up to, or disputed), or by the wrong party.
    InvalidReason,
    /// A record naming, as its deal or subject, a record of the wrong kind (an acknowledgement of
    /// something that is not the other party's handover or return of the same deal).
    WrongReference,
    /// An extension of a deal without a due date, or to a date not after the start.
    InvalidExtension,
}

impl DealRefusal {
    pub const CODES: &'static [&'static str] = &[
        "not_a_party",
        "wrong_subject",
        "duplicate_review",
        "commitment_mismatch",
        "review_window_closed",
        "invalid_reason",
        "wrong_reference",
        "invalid_extension",
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            DealRefusal::NotAParty => "not_a_party",
            DealRefusal::WrongSubject => "wrong_subject",
            DealRefusal::DuplicateReview => "duplicate_review",
            DealRefusal::CommitmentMismatch => "commitment_mismatch",
            DealRefusal::ReviewWindowClosed => "review_window_closed",
            DealRefusal::InvalidReason => "invalid_reason",
            DealRefusal::WrongReference => "wrong_reference",
            DealRefusal::InvalidExtension => "invalid_extension",
        }
    }
}

/// How long after a deal ended its parties may review it (see `docs/protocol.md` section 14).
pub const REVIEW_WINDOW_SECS: u64 = 14 * 24 * 3600;

/// Why the store refuses a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// A quota is full.
    Quota(QuotaKind),
    /// A revocation of a stored record by someone else (valid records cannot do this).
    NotOwnRecord,
    /// A deal rule.
    Deal(DealRefusal),
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
    /// Records removed because their bytes do not decode or verify (or their `log` key is
    /// malformed), or they are a second copy of a stored record's bytes.
    pub corrupt_removed: u64,
    /// Records removed because the apply rules would not keep them (a superseded revision or
    /// profile, a withdrawn listing, a revoked record still stored).
    pub inconsistent_removed: u64,
    /// Refused-id markers dropped because their bytes make no sense.
    pub bad_markers_removed: u64,
    /// Records kept, every index rebuilt from them.
    pub kept: u64,
}

/// What [`Store::check_indexes`] found: whether the live in-memory indexes are exactly what the
/// records on disk make. A healthy store has every count but `records` and `millis` at zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexCheck {
    /// Records read from `log` and verified.
    pub records: u64,
    /// Records whose bytes do not decode or verify, or second copies of a record.
    pub unreadable: u64,
    /// Records the apply rules would not keep (a superseded revision still stored ...).
    pub inconsistent: u64,
    /// Refused-id markers whose bytes make no sense.
    pub bad_markers: u64,
    /// Index entries (records, heads, per-person counts, ordered indexes, deal facts, markers,
    /// counters) present on one side only.
    pub differences: u64,
    /// Listings indexed for search on one side only (and a differing count).
    pub search_differences: u64,
    /// The first differences, in words (at most [`IndexCheck::MAX_EXAMPLES`]).
    pub examples: Vec<String>,
    /// How long the check took.
    pub millis: u64,
}

impl IndexCheck {
    pub const MAX_EXAMPLES: usize = 10;

    /// Whether the indexes agree with the records and every record reads back.
    pub fn is_clean(&self) -> bool {
        self.unreadable == 0
            && self.inconsistent == 0
            && self.bad_markers == 0
            && self.differences == 0
            && self.search_differences == 0
    }
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

/// A verified record made ready for [`Store::apply_prepared`]: for a listing, its search document
/// (the words indexed), which costs about as much as storing it and needs nothing from the store, so
/// the ingest pipeline makes it on its verification thread.
#[derive(Debug, Clone)]
pub struct Prepared {
    record: SignedRecord,
    doc: Option<Document>,
}

impl Prepared {
    pub fn new(record: SignedRecord) -> Self {
        let doc = match record.body() {
            Body::Listing(l) => Some(Document::new(record.id(), record.author(), record.created_at(), l)),
            _ => None,
        };
        Prepared { record, doc }
    }

    /// A verified record whose search document is made later, by [`Prepared::make_document`], which
    /// must run before the record reaches [`Store::apply_prepared`] (otherwise a listing would be
    /// stored but not searchable). The ingest pipeline uses it to make documents on its writer thread,
    /// which has time to spare, rather than on its verification thread, which has none.
    pub fn deferred(record: SignedRecord) -> Self {
        Prepared { record, doc: None }
    }

    /// Makes the search document of a record made with [`Prepared::deferred`] (nothing for a record
    /// that is not a listing, or that has one).
    pub fn make_document(&mut self) {
        if self.doc.is_none()
            && let Body::Listing(l) = self.record.body()
        {
            self.doc = Some(Document::new(self.record.id(), self.record.author(), self.record.created_at(), l));
        }
    }

    pub fn record(&self) -> &SignedRecord {
        &self.record
    }

    pub fn into_record(self) -> SignedRecord {
        self.record
    }
}

/// The store. Cheap to clone: every clone shares one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    t: Trees,
    /// Every index, rebuilt at open. Read by queries, changed by the writer after each commit.
    mem: RwLock<Mem>,
    /// The current listings' search index: apart from `mem`, so that a long search never holds up
    /// the writer's (or the ingest pipeline's) lookups, and indexing words never holds up theirs.
    search: RwLock<SearchIndex>,
    quotas: Quotas,
    path: PathBuf,
    /// Held by writers (apply, prune, repair): one at a time, so a plan made against memory is
    /// still true when its transaction commits and memory absorbs it.
    write: Mutex<()>,
    /// `close` marked the database cleanly closed; the next write through another clone unmarks it.
    closed: AtomicBool,
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
    log: sled::Tree,
    refused: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Trees {
            meta: db.open_tree(keys::TREE_META)?,
            log: db.open_tree(keys::TREE_LOG)?,
            refused: db.open_tree(keys::TREE_REFUSED)?,
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
    /// newer one, and rebuilds the in-memory indexes from the records: with [`Store::check_and_repair`]
    /// (every record re-verified) if the previous run did not [`Store::close`] cleanly or saw
    /// something inconsistent, by decoding only otherwise.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let db = open_db(&cfg)?;
        let t = Trees::open(&db)?;
        let mut repair = false;
        let version = match read_version(&t.meta)? {
            // A database whose meta was lost but that has schema 1's records: migrate it.
            None if has_tree(&db, keys::SCHEMA1_RECORDS)? && !db.open_tree(keys::SCHEMA1_RECORDS)?.is_empty() => {
                Some(1)
            }
            v => v,
        };
        match version {
            None => {
                // A new database, or one whose meta was lost: start at the current schema, and
                // re-verify whatever records there are.
                t.meta.insert(keys::META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
                repair = !t.log.is_empty();
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema { found: v, supported: SCHEMA_VERSION });
            }
            Some(v) if v < SCHEMA_VERSION => {
                migrate(&db, &t, v)?;
                repair = true;
            }
            Some(_) => {}
        }
        // Schema 1's trees, once the migration is recorded (dropping them earlier could lose the
        // records if the migration were interrupted).
        drop_schema1_trees(&db)?;
        let clean = t.meta.remove(keys::META_CLEAN_SHUTDOWN)?.is_some();
        let flagged = t.meta.get(keys::META_NEEDS_REPAIR)?.is_some();
        let has_records = !t.log.is_empty();
        if has_records && (!clean || flagged) {
            repair = true;
        }
        // Make "not cleanly closed" durable before anything else is written.
        db.flush()?;
        let inner = Inner {
            db,
            t,
            mem: RwLock::new(Mem::default()),
            search: RwLock::new(SearchIndex::new()),
            quotas: cfg.quotas,
            path: cfg.path.clone(),
            write: Mutex::new(()),
            closed: AtomicBool::new(false),
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
        } else if has_records {
            let report = store.rebuild(false)?;
            if report != (RepairReport { checked: report.checked, kept: report.checked, ..Default::default() }) {
                // Decoding found damage or records the rules would not keep (both now removed):
                // say so, as a repair would.
                warn!(?report, "store: inconsistent records removed while loading");
                let _ = store.inner.open_repair.set(report);
            }
        }
        if !has_records {
            return Ok(store);
        }
        let store = store.reopen_db(&cfg)?;
        // The pages the rebuild read (sled's, now dropped) and its temporary buffers go back to the
        // OS rather than staying resident for the life of the node (see `crate::alloc`).
        crate::alloc::release_free_memory();
        Ok(store)
    }

    /// Closes and reopens the sled database, keeping the in-memory state: reading the whole `log`
    /// to rebuild memory leaves sled holding every page it read, well beyond its cache capacity
    /// (~40 MB at 100,000 records); a fresh handle starts with none of them.
    fn reopen_db(self, cfg: &StoreConfig) -> Result<Store, StoreError> {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            // Not reachable from `open` (the only caller holds the only handle); keep it as it is.
            Err(inner) => return Ok(Store { inner }),
        };
        let Inner { db, t, mem, search, quotas, path, write, closed, open_repair, .. } = inner;
        drop(t);
        db.flush()?;
        drop(db);
        let db = open_db(cfg)?;
        let t = Trees::open(&db)?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                t,
                mem,
                search,
                quotas,
                path,
                write,
                closed,
                open_repair,
                #[cfg(test)]
                apply_transactions: Default::default(),
            }),
        })
    }

    /// Writes everything to disk (sled's `flush`: the log is written and synced).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Flushes and marks the store as cleanly closed, so the next open skips the full
    /// re-verification. Other clones may still write: their next write clears the mark again.
    pub fn close(self) -> Result<(), StoreError> {
        let _w = self.writer();
        self.inner.db.flush()?;
        self.inner.t.meta.insert(keys::META_CLEAN_SHUTDOWN, &[1u8])?;
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.db.flush()?;
        Ok(())
    }

    /// What the repair run by [`Store::open`] found, if the previous run did not close cleanly (or
    /// loading found records to remove).
    pub fn open_repair(&self) -> Option<RepairReport> {
        self.inner.open_repair.get().copied()
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        self.inner.quotas
    }

    /// Searches the current listings (see [`crate::search`] for the query semantics).
    pub fn search(&self, query: &Query, now: Timestamp) -> Result<SearchResults, QueryError> {
        let prepared = query.prepare()?;
        Ok(self.search_index().search_prepared(&prepared, now))
    }

    /// What [`Store::apply`] would answer for a record with this id and author without looking at
    /// the rest of it: `Duplicate` if it is stored, `Stale(Refused)` if its id is refused for this
    /// author at `now`; `None` if it needs applying. The ingest pipeline asks before verifying.
    pub fn known(&self, id: &RecordId, author: &PublicKey, now: Timestamp) -> Option<Outcome> {
        apply::Plan::known(&self.mem(), id, author, now)
    }

    /// Whether the store holds no record at all (from memory: no disk access).
    pub fn is_empty(&self) -> bool {
        self.mem().total() == 0
    }

    /// Whether the store holds any record by `author`.
    pub fn has_records_by(&self, author: &PublicKey) -> bool {
        self.mem().person(author.as_bytes()).records > 0
    }

    /// Estimated heap bytes of the in-memory indexes and of the search index.
    pub fn index_memory_bytes(&self) -> (usize, usize) {
        (self.mem().memory_bytes(), self.search_index().memory_bytes())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        // A writer that panicked left no half-done state behind (memory absorbs only committed
        // transactions, and a repair is idempotent), so a poisoned lock is safe to take.
        self.inner.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mem(&self) -> RwLockReadGuard<'_, Mem> {
        self.inner.mem.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mem_mut(&self) -> RwLockWriteGuard<'_, Mem> {
        self.inner.mem.write().unwrap_or_else(|e| e.into_inner())
    }

    fn search_index(&self) -> RwLockReadGuard<'_, SearchIndex> {
        self.inner.search.read().unwrap_or_else(|e| e.into_inner())
    }

    fn search_mut(&self) -> RwLockWriteGuard<'_, SearchIndex> {
        self.inner.search.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by every writer before it writes: a `close` from another clone no longer describes
    /// the database.
    fn note_write(&self) -> Result<(), StoreError> {
        if self.inner.closed.swap(false, Ordering::SeqCst) {
            self.inner.t.meta.remove(keys::META_CLEAN_SHUTDOWN)?;
        }
        Ok(())
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

/// How long an open waits for sled's lock on the database file. sled 0.34 releases that lock from
/// its background threads after the `Db` is dropped, not in the drop (spacejam/sled#1289), so an
/// open right after a close of the same database (the reopen at the end of [`Store::open`]; a store
/// closed and opened again in one process) can find it still held for a moment: under load the
/// crash test saw the node fail to start that way. A node really running on the same home still
/// holds it after this wait, and the open fails with sled's error.
const LOCK_WAIT: Duration = Duration::from_secs(3);

fn open_db(cfg: &StoreConfig) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        match sled::Config::new().path(&cfg.path).cache_capacity(cfg.cache_bytes).open() {
            Err(sled::Error::Io(e)) if lock_held(&e) && Instant::now() < deadline => {
                // No event tells when sled's thread lets go: back off and try again.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            r => return r.map_err(|e| StoreError::Open { path: cfg.path.clone(), source: e.into() }),
        }
    }
}

/// sled's "could not acquire lock" (an `Other` I/O error wrapping the `flock` failure).
fn lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().starts_with("could not acquire lock")
}

fn has_tree(db: &sled::Db, name: &str) -> Result<bool, StoreError> {
    Ok(db.tree_names().iter().any(|n| n.as_ref() == name.as_bytes()))
}

/// Drops schema 1's trees if they are still there.
fn drop_schema1_trees(db: &sled::Db) -> Result<(), StoreError> {
    for name in keys::SCHEMA1_INDEXES.iter().chain(std::iter::once(&keys::SCHEMA1_RECORDS)) {
        if has_tree(db, name)? {
            db.drop_tree(name)?;
        }
    }
    Ok(())
}

/// The migration hook: brings a database from schema `from` up to [`SCHEMA_VERSION`], one step at a
/// time, recording each version reached (so an interrupted migration resumes where it stopped).
/// Indexes need no migrating: the open that follows rebuilds them from the records.
fn migrate(db: &sled::Db, t: &Trees, from: u32) -> Result<(), StoreError> {
    for v in from..SCHEMA_VERSION {
        migration_step(db, t, v)?;
        t.meta.insert(keys::META_SCHEMA_VERSION, &(v + 1).to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

/// One migration step, from schema `v` to `v + 1`.
fn migration_step(db: &sled::Db, t: &Trees, v: u32) -> Result<(), StoreError> {
    match v {
        1 => step_1_to_2(db, t),
        _ => Err(StoreError::UnsupportedSchema { found: v }),
    }
}

/// Schema 1 → 2: copies `records` (`id32 → bytes`) into `log` (`seq8 → bytes`), in id order, and
/// flushes. Idempotent: `log` is cleared first, so an interrupted step starts over. The refused
/// markers keep their layout. The old trees are dropped by `open` once version 2 is recorded.
fn step_1_to_2(db: &sled::Db, t: &Trees) -> Result<(), StoreError> {
    const CHUNK: usize = 1024;
    t.log.clear()?;
    let records = db.open_tree(keys::SCHEMA1_RECORDS)?;
    let mut seq = 0u64;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in records.iter() {
        let (_, v) = item?;
        batch.insert(&keys::seq_key(seq), v);
        seq += 1;
        n += 1;
        if n == CHUNK {
            t.log.apply_batch(std::mem::take(&mut batch))?;
            n = 0;
        }
    }
    t.log.apply_batch(batch)?;
    info!(records = seq, "store migrated from schema 1 to 2");
    db.flush()?;
    Ok(())
}
