//! Writing records: the apply rules (duplicates, refused ids, revisions, withdrawals, profiles,
//! revocations, expiry, quotas) and the transactional helpers every write goes through.
//!
//! sled transactions offer only point reads and writes (no scans), so every rule here is decided by
//! point lookups: the `heads` tree holds the current revision of each replaceable address and the
//! `counts` tree the counters the quotas need, both updated in the same transaction as the records.
//! Reads inside a transaction see its own earlier writes, which is how a later record in a batch
//! sees an earlier one.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use tracing::warn;
use troc_protocol::{Body, Header, PublicKey, RecordId, RecordType, SignedRecord, Timestamp, decode};

use super::keys::{self, Ix, ListingHead, Marker, ProfileHead};
use super::{
    MAX_RECORDS_PER_TRANSACTION, Outcome, QuotaKind, Quotas, RefuseReason, StaleReason, Store, StoreError, Trees,
};

pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// A transaction's view of every tree.
pub(super) struct Tx<'a> {
    pub meta: &'a TransactionalTree,
    pub records: &'a TransactionalTree,
    pub refused: &'a TransactionalTree,
    pub heads: &'a TransactionalTree,
    pub by_author: &'a TransactionalTree,
    pub by_scope: &'a TransactionalTree,
    pub by_kind: &'a TransactionalTree,
    pub by_expiry: &'a TransactionalTree,
    pub links: &'a TransactionalTree,
    pub counts: &'a TransactionalTree,
}

/// What removing a record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    NotStored,
    /// Removed, with its index entries; of this type.
    Record(RecordType),
    /// The bytes were removed, but they did not decode: their index entries could not be found.
    Corrupt,
}

impl Trees {
    /// Runs `f` in one transaction over every tree. `f` may run more than once (sled retries on
    /// conflicts), so it must only read its inputs and write through the `Tx`.
    pub(super) fn transact<A>(&self, f: impl Fn(&Tx<'_>) -> TxResult<A>) -> Result<A, StoreError> {
        let trees = (
            &self.meta,
            &self.records,
            &self.refused,
            &self.heads,
            &self.by_author,
            &self.by_scope,
            &self.by_kind,
            &self.by_expiry,
            &self.links,
            &self.counts,
        );
        let r = trees.transaction(
            |(meta, records, refused, heads, by_author, by_scope, by_kind, by_expiry, links, counts)| {
                let tx = Tx { meta, records, refused, heads, by_author, by_scope, by_kind, by_expiry, links, counts };
                // Any write means the store is open and in use: a `close` from another clone no longer
                // describes the database.
                tx.meta.remove(keys::META_CLEAN_SHUTDOWN)?;
                f(&tx)
            },
        )?;
        Ok(r)
    }
}

impl Tx<'_> {
    fn index(&self, ix: Ix) -> &TransactionalTree {
        match ix {
            Ix::ByAuthor => self.by_author,
            Ix::ByScope => self.by_scope,
            Ix::ByKind => self.by_kind,
            Ix::ByExpiry => self.by_expiry,
            Ix::Links => self.links,
        }
    }

    /// Flags the store for a repair at the next open.
    pub fn flag_repair(&self, why: &str) -> TxResult<()> {
        warn!(why, "store inconsistency seen: a repair will run at the next open");
        self.meta.insert(keys::META_NEEDS_REPAIR, &[1u8])?;
        Ok(())
    }

    /// A counter's value (missing is zero; a corrupt one counts as zero and flags a repair, which
    /// recounts).
    pub fn counter(&self, key: &[u8]) -> TxResult<u64> {
        let v = self.counts.get(key)?;
        match keys::counter_value(v.as_deref()) {
            Some(n) => Ok(n),
            None => {
                self.flag_repair("corrupt counter")?;
                Ok(0)
            }
        }
    }

    /// Adds `delta` to a counter (saturating at zero: a counter that drifted is fixed by a repair).
    pub fn bump(&self, key: &[u8], delta: i64) -> TxResult<()> {
        let n = self.counter(key)?.saturating_add_signed(delta);
        if n == 0 {
            self.counts.remove(key)?;
        } else {
            self.counts.insert(key, &n.to_be_bytes())?;
        }
        Ok(())
    }

    /// Stores a record and its index entries, and counts it.
    pub fn insert_record(&self, rec: &SignedRecord) -> TxResult<()> {
        let id = rec.id();
        self.records.insert(id.as_bytes(), rec.bytes())?;
        self.index_record(&id, rec.header(), rec.body(), rec.bytes().len() as u64)
    }

    /// Writes a stored record's index entries and counts it (`len`: its size in bytes).
    pub fn index_record(&self, id: &RecordId, header: &Header, body: &Body, len: u64) -> TxResult<()> {
        for (ix, k, v) in keys::entries(id, header, body) {
            self.index(ix).insert(k, v)?;
        }
        self.count_record(header.author.as_bytes(), header.record_type, len, 1)
    }

    fn count_record(&self, author: &[u8; 32], t: RecordType, len: u64, sign: i64) -> TxResult<()> {
        self.bump(keys::COUNT_TOTAL, sign)?;
        self.bump(keys::COUNT_BYTES, sign.saturating_mul(len as i64))?;
        self.bump(&keys::count_author(author), sign)?;
        self.bump(&keys::count_type(t), sign)
    }

    /// Removes a stored record with its index entries and uncounts it; if it was the head of its
    /// address (current listing revision, withdrawal, current profile), the address loses its head.
    /// Refused markers are the caller's business.
    pub fn remove_record(&self, id: &RecordId) -> TxResult<Removed> {
        let Some(bytes) = self.records.remove(id.as_bytes())? else {
            return Ok(Removed::NotStored);
        };
        // Decode only (no signature check): the bytes are ours, read back to find their index
        // entries; nothing here hands out a `Signed`.
        let u = match decode(&bytes) {
            Ok(u) if u.id() == *id => u,
            _ => {
                self.bump(keys::COUNT_TOTAL, -1)?;
                self.bump(keys::COUNT_BYTES, -(bytes.len() as i64))?;
                self.flag_repair("a removed record did not decode")?;
                return Ok(Removed::Corrupt);
            }
        };
        let (header, body) = (u.header(), u.body());
        for (ix, k, _) in keys::entries(id, header, body) {
            self.index(ix).remove(k)?;
        }
        self.count_record(header.author.as_bytes(), header.record_type, bytes.len() as u64, -1)?;
        match body {
            Body::Listing(l) => {
                let hk = keys::head_listing(&header.author, &l.key);
                if self.heads.get(&hk)?.and_then(|v| ListingHead::decode(&v)).is_some_and(|h| h.id == *id) {
                    self.drop_listing_head(&header.author, &l.key)?;
                }
            }
            Body::Withdrawal(w) => {
                let hk = keys::head_withdrawal(&header.author, &w.listing_key);
                if self.heads.get(&hk)?.is_some_and(|v| v.as_ref() == id.as_bytes()) {
                    self.heads.remove(hk)?;
                }
            }
            Body::Profile(_) => {
                let hk = keys::head_profile(&header.author);
                if self.heads.get(&hk)?.and_then(|v| ProfileHead::decode(&v)).is_some_and(|h| h.id == *id) {
                    self.heads.remove(hk)?;
                }
            }
            _ => {}
        }
        Ok(Removed::Record(header.record_type))
    }

    /// Removes a listing address's head, if any, and uncounts it as live.
    pub fn drop_listing_head(&self, author: &PublicKey, key: &troc_protocol::ListingKey) -> TxResult<()> {
        if self.heads.remove(keys::head_listing(author, key))?.is_some() {
            self.bump(&keys::count_live(author.as_bytes()), -1)?;
            self.bump(keys::COUNT_LIVE, -1)?;
        }
        Ok(())
    }

    pub fn set_listing_head(
        &self,
        author: &PublicKey,
        key: &troc_protocol::ListingKey,
        head: ListingHead,
    ) -> TxResult<()> {
        if self.heads.insert(keys::head_listing(author, key), head.encode())?.is_none() {
            self.bump(&keys::count_live(author.as_bytes()), 1)?;
            self.bump(keys::COUNT_LIVE, 1)?;
        }
        Ok(())
    }

    /// Remembers `id` (by `author`) as refused until `expiry`. An existing marker of the same author
    /// is extended, never shortened. `claim` marks a marker made from a revocation of a record we
    /// have not seen: it only claims the author, so it never overwrites a marker of another author
    /// made from an actual record.
    pub fn mark_refused(&self, id: &RecordId, author: &PublicKey, expiry: Timestamp, claim: bool) -> TxResult<()> {
        let author = *author.as_bytes();
        let old = self.refused.get(id.as_bytes())?.and_then(|v| Marker::decode(&v));
        let expiry = match old {
            Some(m) if m.author != author && claim => return Ok(()),
            Some(m) if m.author == author => m.expiry.max(expiry),
            _ => expiry,
        };
        if let Some(m) = old
            && m.expiry != keys::NEVER
        {
            self.by_expiry.remove(keys::expiry_key(keys::EXPIRY_MARKER, m.expiry, id))?;
        }
        self.refused.insert(id.as_bytes(), Marker { expiry, author }.encode())?;
        if expiry != keys::NEVER {
            self.by_expiry.insert(keys::expiry_key(keys::EXPIRY_MARKER, expiry, id), &[])?;
        }
        Ok(())
    }

    /// Is `id` by `author` refused at `now`?
    fn is_refused(&self, id: &RecordId, author: &PublicKey, now: Timestamp) -> TxResult<bool> {
        Ok(self
            .refused
            .get(id.as_bytes())?
            .and_then(|v| Marker::decode(&v))
            .is_some_and(|m| m.author == *author.as_bytes() && m.expiry > now))
    }

    /// Which quota, if any, refuses adding `added` records by `author`.
    fn quota(&self, q: &Quotas, author: &PublicKey, added: u64) -> TxResult<Option<QuotaKind>> {
        if added == 0 {
            return Ok(None);
        }
        if self.counter(keys::COUNT_TOTAL)?.saturating_add(added) > q.max_total_records as u64 {
            return Ok(Some(QuotaKind::TotalRecords));
        }
        if self.counter(&keys::count_author(author.as_bytes()))?.saturating_add(added) > q.max_records_per_author as u64
        {
            return Ok(Some(QuotaKind::AuthorRecords));
        }
        Ok(None)
    }

    /// Applies one record: the rules of [`Store::apply`].
    fn apply_one(&self, rec: &SignedRecord, now: Timestamp, q: &Quotas) -> TxResult<Outcome> {
        let id = rec.id();
        if self.records.get(id.as_bytes())?.is_some() {
            return Ok(Outcome::Duplicate);
        }
        let author = rec.author();
        if self.is_refused(&id, author, now)? {
            return Ok(Outcome::Stale(StaleReason::Refused));
        }
        if keys::expiry_of(rec.header(), rec.body()).is_some_and(|e| e <= now) {
            return Ok(Outcome::Stale(StaleReason::Expired));
        }
        let scope = keys::scope_of(rec.header(), rec.body());
        let stored = |replaced| Outcome::Stored { id, scope: scope.clone(), replaced };
        let quota_refused = |k| Outcome::Refused(RefuseReason::Quota(k));

        match rec.body() {
            Body::Listing(l) => {
                if self.heads.get(keys::head_withdrawal(author, &l.key))?.is_some() {
                    return Ok(Outcome::Stale(StaleReason::Withdrawn));
                }
                let current = self.listing_head(author, &l.key)?;
                let new_head = ListingHead { id, revision: l.revision, valid_until: l.valid_until };
                match current {
                    Some(h) if !h.is_beaten_by(l.revision, &id) => {
                        self.mark_refused(&id, author, l.valid_until, false)?;
                        Ok(Outcome::Stale(StaleReason::OlderRevision))
                    }
                    Some(h) => {
                        // Replaces the current revision: one record out, one in.
                        self.remove_record(&h.id)?;
                        self.drop_listing_head(author, &l.key)?;
                        self.mark_refused(&h.id, author, h.valid_until, false)?;
                        self.insert_record(rec)?;
                        self.set_listing_head(author, &l.key, new_head)?;
                        Ok(stored(Some(h.id)))
                    }
                    None => {
                        let live = self.counter(&keys::count_live(author.as_bytes()))?;
                        if live >= q.max_live_listings_per_author as u64 {
                            return Ok(quota_refused(QuotaKind::LiveListings));
                        }
                        if let Some(k) = self.quota(q, author, 1)? {
                            return Ok(quota_refused(k));
                        }
                        self.insert_record(rec)?;
                        self.set_listing_head(author, &l.key, new_head)?;
                        Ok(stored(None))
                    }
                }
            }
            Body::Withdrawal(w) => {
                let wk = keys::head_withdrawal(author, &w.listing_key);
                if self.heads.get(&wk)?.is_some() {
                    return Ok(Outcome::Stale(StaleReason::AlreadyWithdrawn));
                }
                let current = self.listing_head(author, &w.listing_key)?;
                if let Some(k) = self.quota(q, author, u64::from(current.is_none()))? {
                    return Ok(quota_refused(k));
                }
                if let Some(h) = current {
                    self.remove_record(&h.id)?;
                    self.drop_listing_head(author, &w.listing_key)?;
                    self.mark_refused(&h.id, author, h.valid_until, false)?;
                }
                self.insert_record(rec)?;
                self.heads.insert(wk, id.as_bytes())?;
                Ok(stored(current.map(|h| h.id)))
            }
            Body::Profile(_) => {
                let pk = keys::head_profile(author);
                let current = match self.heads.get(&pk)? {
                    None => None,
                    Some(v) => match ProfileHead::decode(&v) {
                        Some(h) => Some(h),
                        None => {
                            self.flag_repair("corrupt profile head")?;
                            None
                        }
                    },
                };
                if let Some(h) = current
                    && !h.is_beaten_by(rec.created_at(), &id)
                {
                    return Ok(Outcome::Stale(StaleReason::OlderRevision));
                }
                if let Some(k) = self.quota(q, author, u64::from(current.is_none()))? {
                    return Ok(quota_refused(k));
                }
                if let Some(h) = current {
                    self.remove_record(&h.id)?;
                    let expiry = now.saturating_add(keys::SUPERSEDED_MARKER_SECS);
                    self.mark_refused(&h.id, author, expiry, false)?;
                }
                self.insert_record(rec)?;
                self.heads.insert(pk, ProfileHead { id, created_at: rec.created_at() }.encode())?;
                Ok(stored(current.map(|h| h.id)))
            }
            Body::Revocation(r) => {
                let target = self.records.get(r.target.as_bytes())?;
                if let Some(bytes) = &target
                    && let Ok(u) = decode(bytes)
                    && u.header().author != *author
                {
                    return Ok(Outcome::Refused(RefuseReason::NotOwnRecord));
                }
                if let Some(k) = self.quota(q, author, u64::from(target.is_none()))? {
                    return Ok(quota_refused(k));
                }
                let removed = self.remove_record(&r.target)?;
                // Unseen target: the marker only claims the author (see `mark_refused`).
                self.mark_refused(&r.target, author, keys::NEVER, removed == Removed::NotStored)?;
                self.insert_record(rec)?;
                Ok(stored((removed != Removed::NotStored).then_some(r.target)))
            }
            _ => {
                if let Some(k) = self.quota(q, author, 1)? {
                    return Ok(quota_refused(k));
                }
                self.insert_record(rec)?;
                Ok(stored(None))
            }
        }
    }

    /// The current revision of a listing address (a corrupt head counts as none and flags a repair).
    fn listing_head(&self, author: &PublicKey, key: &troc_protocol::ListingKey) -> TxResult<Option<ListingHead>> {
        match self.heads.get(keys::head_listing(author, key))? {
            None => Ok(None),
            Some(v) => match ListingHead::decode(&v) {
                Some(h) => Ok(Some(h)),
                None => {
                    self.flag_repair("corrupt listing head")?;
                    self.drop_listing_head(author, key)?;
                    Ok(None)
                }
            },
        }
    }
}

impl Store {
    /// Applies a batch of verified records, in order, and returns one [`Outcome`] per record. Later
    /// records see earlier ones (a withdrawal after its listing in the same batch withdraws it).
    ///
    /// The batch is written in one transaction (a batch over 4096 records in several): after a
    /// crash, all of it or none of it is there. Nothing is flushed: call [`Store::flush`] at the
    /// caller's commit points.
    ///
    /// The rules, per record:
    /// - already stored: `Duplicate`; its id refused (superseded, withdrawn, revoked): `Stale(Refused)`;
    ///   a listing or vouch expired at `now` (or a withdrawal past its retention): `Stale(Expired)`.
    /// - listing: withdrawn address: `Stale(Withdrawn)`; an older (or equal) revision than the
    ///   current one (by revision, then greater id): `Stale(OlderRevision)`, and its id is refused;
    ///   otherwise stored as the current revision, the one it supersedes deleted and refused.
    /// - withdrawal: a second one for the address: `Stale(AlreadyWithdrawn)`; otherwise stored, and
    ///   the address's current revision deleted and refused (a withdrawal for an address never seen
    ///   is kept, to refuse the listing if it arrives).
    /// - profile: the newest per author (by `created_at`, then greater id) wins; older:
    ///   `Stale(OlderRevision)`; newer: replaces the stored one, which is refused.
    /// - revocation: its target deleted (if stored) and refused; a target stored by another author:
    ///   `Refused(NotOwnRecord)`.
    /// - quotas: `Refused(Quota(_))` when adding the record would exceed a quota (a replacement adds
    ///   nothing).
    pub fn apply(&self, batch: &[SignedRecord], now: Timestamp) -> Result<Vec<Outcome>, StoreError> {
        let _w = self.writer();
        let q = self.inner.quotas;
        let mut out = Vec::with_capacity(batch.len());
        for part in batch.chunks(MAX_RECORDS_PER_TRANSACTION) {
            #[cfg(test)]
            self.inner.apply_transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let outcomes = self
                .inner
                .t
                .transact(|tx| part.iter().map(|rec| tx.apply_one(rec, now, &q)).collect::<TxResult<Vec<_>>>())?;
            out.extend(outcomes);
        }
        Ok(out)
    }
}
