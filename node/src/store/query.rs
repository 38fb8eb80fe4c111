//! Reading: single records (verified, or raw bytes for sync), sync scopes, listings, profiles,
//! deals, reviews, and the store's figures.
//!
//! Index scans give ids; the records are then read from `records` and verified (in batches) before
//! a `Signed` is handed out. An index entry whose record is missing, or a record whose bytes fail,
//! is skipped with a warning and flags the store for a repair: a damaged entry never fails a whole
//! query, and never crashes.

use std::collections::BTreeSet;

use troc_protocol::{
    Body, Listing, ListingKey, Profile, PublicKey, RecordId, RecordType, Review, Signed, SignedRecord, Timestamp,
    Unverified, Vouch, decode, verify_batch,
};

use super::error::CorruptReason;
use super::keys::{self, ListingHead, ProfileHead};
use super::{ListingFilter, Scope, Store, StoreError, StoreStats};

/// Records verified together in one batch when reading lists.
const VERIFY_CHUNK: usize = 64;

impl Store {
    /// The record `id`, verified. A stored record whose bytes fail is a
    /// [`StoreError::CorruptRecord`] (and flags a repair).
    pub fn get(&self, id: &RecordId) -> Result<Option<SignedRecord>, StoreError> {
        let Some(bytes) = self.inner.t.records.get(id.as_bytes())? else {
            return Ok(None);
        };
        let checked = decode(&bytes).map_err(CorruptReason::from).and_then(|u| {
            if u.id() != *id {
                return Err(CorruptReason::IdMismatch { found: u.id() });
            }
            u.verify().map_err(CorruptReason::from)
        });
        match checked {
            Ok(rec) => Ok(Some(rec)),
            Err(source) => {
                self.flag_repair("a stored record failed verification");
                Err(StoreError::CorruptRecord { id: *id, source })
            }
        }
    }

    /// The record `id` as stored, not verified: for the sync path, which sends the bytes on and
    /// whose receiver verifies them.
    pub fn get_bytes(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.t.records.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    pub fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.inner.t.records.contains_key(id.as_bytes())?)
    }

    /// Is `id` known dead (a superseded revision, a withdrawn listing's revision, a revoked record)?
    /// Catch-up uses it to not fetch such ids again.
    ///
    /// A marker made by a revocation of a record not seen yet only claims that record's author; the
    /// apply rules check the author, this does not (it has no record to check against).
    pub fn is_refused(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.inner.t.refused.contains_key(id.as_bytes())?)
    }

    /// The live records of a sync scope as `(created_at, id)`, sorted by `(created_at, id)`, without
    /// the listings and vouches expired at `now` (and withdrawals past their retention).
    pub fn sync_items(&self, scope: &Scope, now: Timestamp) -> Result<Vec<(u64, RecordId)>, StoreError> {
        let Some(prefix) = scope.key_prefix() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.inner.t.by_scope.scan_prefix(&prefix) {
            let (k, v) = item?;
            if is_expired(&v, now) {
                continue;
            }
            match keys::tail_of(&k).filter(|_| k.len() == prefix.len() + 40) {
                Some(t) => out.push(t),
                None => self.flag_repair("malformed by_scope key"),
            }
        }
        Ok(out)
    }

    /// Every scope that has at least one record (expired or not), in key order: Global first.
    pub fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        let mut out = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(item) = self.inner.t.by_scope.range(from.clone()..).next() {
            let (k, _) = item?;
            match Scope::parse_prefix(&k) {
                Some((scope, len)) => {
                    out.push(scope);
                    // The smallest key after every key of this scope: the terminator 0x00 becomes 0x01.
                    from = k[..len].to_vec();
                    if let Some(last) = from.last_mut() {
                        *last = 1;
                    }
                }
                None => {
                    self.flag_repair("malformed by_scope key");
                    from = k.to_vec();
                    from.push(0);
                }
            }
        }
        Ok(out)
    }

    /// The current revision of the listing `(author, key)`, expired or not; `None` if there is none
    /// (never seen, withdrawn, revoked, or pruned).
    pub fn latest_listing(&self, author: &PublicKey, key: &ListingKey) -> Result<Option<Signed<Listing>>, StoreError> {
        let Some(v) = self.inner.t.heads.get(keys::head_listing(author, key))? else {
            return Ok(None);
        };
        let Some(head) = ListingHead::decode(&v) else {
            self.flag_repair("corrupt listing head");
            return Ok(None);
        };
        self.get_typed(&head.id, "listing")
    }

    /// The author's current profile.
    pub fn profile(&self, author: &PublicKey) -> Result<Option<Signed<Profile>>, StoreError> {
        let Some(v) = self.inner.t.heads.get(keys::head_profile(author))? else {
            return Ok(None);
        };
        let Some(head) = ProfileHead::decode(&v) else {
            self.flag_repair("corrupt profile head");
            return Ok(None);
        };
        self.get_typed(&head.id, "profile")
    }

    fn get_typed<T: troc_protocol::RecordBody>(
        &self,
        id: &RecordId,
        expected: &'static str,
    ) -> Result<Option<Signed<T>>, StoreError> {
        match self.get(id)? {
            None => {
                self.flag_repair("a head names a missing record");
                Ok(None)
            }
            Some(rec) => match rec.downcast::<T>() {
                Ok(t) => Ok(Some(t)),
                Err(_) => {
                    self.flag_repair("a head names a record of another type");
                    Err(StoreError::CorruptRecord { id: *id, source: CorruptReason::WrongType { expected } })
                }
            },
        }
    }

    /// Live listings (current revision, not withdrawn, not expired at `now`) matching `filter`,
    /// newest first.
    pub fn listings(&self, filter: &ListingFilter, now: Timestamp) -> Result<Vec<Signed<Listing>>, StoreError> {
        let t = &self.inner.t;
        // Candidates from the most selective index, as (created_at, id), newest first.
        let mut candidates: Vec<(u64, RecordId)> = Vec::new();
        if let Some(author) = &filter.author {
            for item in t.by_author.scan_prefix(author.as_bytes()) {
                let (k, v) = item?;
                if v.first() == Some(&RecordType::Listing.code()) {
                    candidates.extend(keys::tail_of(&k));
                }
            }
        } else if let Some(community) = &filter.community {
            let Some(prefix) = Scope::Community(community.clone()).key_prefix() else {
                return Ok(Vec::new());
            };
            for item in t.by_scope.scan_prefix(&prefix) {
                let (k, v) = item?;
                if !is_expired(&v, now) {
                    candidates.extend(keys::tail_of(&k));
                }
            }
        } else {
            let prefix = filter.kind.map(|k| keys::kind_prefix(k, filter.category)).unwrap_or_default();
            for item in t.by_kind.scan_prefix(&prefix) {
                let (k, v) = item?;
                if !is_expired(&v, now) {
                    candidates.extend(keys::tail_of(&k));
                }
            }
        }
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let limit = filter.limit.unwrap_or(usize::MAX);
        let keep = |u: &Unverified| -> Result<bool, StoreError> {
            let Body::Listing(l) = u.body() else { return Ok(false) };
            let author = &u.header().author;
            let matches = filter.author.is_none_or(|a| a == *author)
                && filter.community.as_ref().is_none_or(|c| *c == l.community)
                && filter.kind.is_none_or(|k| k == l.kind)
                && filter.category.is_none_or(|c| c == l.category)
                && l.valid_until > now;
            if !matches {
                return Ok(false);
            }
            // Only the current revision is live (a superseded one is deleted on apply; this guards
            // against an index out of step).
            let head = t.heads.get(keys::head_listing(author, &l.key))?.and_then(|v| ListingHead::decode(&v));
            Ok(head.is_some_and(|h| h.id == u.id()))
        };
        let recs = self.load_many(candidates.into_iter().map(|(_, id)| id), limit, keep)?;
        Ok(recs.into_iter().filter_map(|r| r.downcast::<Listing>().ok()).collect())
    }

    /// The author's records, every type, newest first, at most `limit`.
    pub fn by_author(&self, author: &PublicKey, limit: usize) -> Result<Vec<SignedRecord>, StoreError> {
        let mut ids = Vec::new();
        for item in self.inner.t.by_author.scan_prefix(author.as_bytes()).keys().rev() {
            let k = item?;
            ids.extend(keys::tail_of(&k).map(|(_, id)| id));
            if ids.len() >= limit.saturating_mul(2).max(limit.saturating_add(VERIFY_CHUNK)) {
                // Enough candidates (corrupt ones are rare): stop scanning an author's whole history.
                break;
            }
        }
        self.load_many(ids, limit, |_| Ok(true))
    }

    /// A person's deals: the proposals, agreements and extensions they are a party of, and every
    /// record referencing those proposals and agreements (deal steps, cancellations, extensions,
    /// reviews, review commitments), oldest first.
    pub fn deals_of(&self, party: &PublicKey) -> Result<Vec<SignedRecord>, StoreError> {
        let t = &self.inner.t;
        let mut found: BTreeSet<(u64, RecordId)> = BTreeSet::new();
        let mut deals = Vec::new();
        for item in t.links.scan_prefix(keys::link_prefix(keys::LINK_PARTY, party.as_bytes())) {
            let (k, v) = item?;
            let Some(entry) = keys::tail_of(&k) else { continue };
            found.insert(entry);
            let is_deal = [RecordType::Agreement.code(), RecordType::Proposal.code()];
            if v.first().is_some_and(|c| is_deal.contains(c)) {
                deals.push(entry.1);
            }
        }
        for deal in deals {
            found.extend(self.referencing_entries(&deal)?);
        }
        self.load_many(found.into_iter().map(|(_, id)| id), usize::MAX, |_| Ok(true))
    }

    /// The records naming an agreement (or a proposal, for cancellations), oldest first: handovers,
    /// returns, acknowledgements, completions, cancellations, extensions, reviews, review commitments.
    pub fn records_referencing(&self, deal: &RecordId) -> Result<Vec<SignedRecord>, StoreError> {
        let entries = self.referencing_entries(deal)?;
        self.load_many(entries.into_iter().map(|(_, id)| id), usize::MAX, |_| Ok(true))
    }

    fn referencing_entries(&self, deal: &RecordId) -> Result<Vec<(u64, RecordId)>, StoreError> {
        let mut out = Vec::new();
        for k in self.inner.t.links.scan_prefix(keys::link_prefix(keys::LINK_REFERENCE, deal.as_bytes())).keys() {
            out.extend(keys::tail_of(&k?));
        }
        Ok(out)
    }

    /// Ids of records of type `t` about `subject` (reviews, review commitments, vouches), oldest first.
    fn subject_ids(&self, subject: &PublicKey, t: RecordType) -> Result<Vec<RecordId>, StoreError> {
        let mut out = Vec::new();
        for item in self.inner.t.links.scan_prefix(keys::link_prefix(keys::LINK_SUBJECT, subject.as_bytes())) {
            let (k, v) = item?;
            if v.first() == Some(&t.code()) {
                out.extend(keys::tail_of(&k).map(|(_, id)| id));
            }
        }
        Ok(out)
    }

    /// The reviews about `subject`, oldest first.
    pub fn reviews_of(&self, subject: &PublicKey) -> Result<Vec<Signed<Review>>, StoreError> {
        let ids = self.subject_ids(subject, RecordType::Review)?;
        let recs = self.load_many(ids, usize::MAX, |_| Ok(true))?;
        Ok(recs.into_iter().filter_map(|r| r.downcast::<Review>().ok()).collect())
    }

    /// The vouches for `subject` not expired at `now`, oldest first.
    pub fn vouches_of(&self, subject: &PublicKey, now: Timestamp) -> Result<Vec<Signed<Vouch>>, StoreError> {
        let ids = self.subject_ids(subject, RecordType::Vouch)?;
        let keep = |u: &Unverified| Ok(matches!(u.body(), Body::Vouch(v) if v.expires_at > now));
        let recs = self.load_many(ids, usize::MAX, keep)?;
        Ok(recs.into_iter().filter_map(|r| r.downcast::<Vouch>().ok()).collect())
    }

    /// Every stored record id, in id order. A malformed key is reported as an error item.
    pub fn all_ids(&self) -> impl Iterator<Item = Result<RecordId, StoreError>> + use<> {
        self.inner.t.records.iter().keys().map(|k| {
            let k = k?;
            keys::record_key(&k).ok_or(StoreError::CorruptMeta { what: "record key" })
        })
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let counts = &self.inner.t.counts;
        let counter = |k: &[u8]| -> Result<u64, StoreError> {
            let v = counts.get(k)?;
            keys::counter_value(v.as_deref()).ok_or(StoreError::CorruptMeta { what: "counter" })
        };
        let by_type = RecordType::ALL
            .iter()
            .map(|&t| Ok((t, counter(&keys::count_type(t))?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(StoreStats {
            records: counter(keys::COUNT_TOTAL)?,
            by_type,
            live_listings: counter(keys::COUNT_LIVE)?,
            refused_ids: self.inner.t.refused.len() as u64,
            record_bytes: counter(keys::COUNT_BYTES)?,
            size_on_disk: self.inner.db.size_on_disk()?,
        })
    }

    /// Reads, filters and verifies records, in the order of `ids`, until `limit` are kept. Missing
    /// and corrupt records are skipped (and flag a repair).
    pub(super) fn load_many(
        &self,
        ids: impl IntoIterator<Item = RecordId>,
        limit: usize,
        mut keep: impl FnMut(&Unverified) -> Result<bool, StoreError>,
    ) -> Result<Vec<SignedRecord>, StoreError> {
        let mut out = Vec::new();
        let mut pending: Vec<Unverified> = Vec::new();
        let mut ids = ids.into_iter();
        while out.len() < limit {
            let want = (limit - out.len()).min(VERIFY_CHUNK);
            pending.clear();
            for id in ids.by_ref() {
                let Some(bytes) = self.inner.t.records.get(id.as_bytes())? else {
                    self.flag_repair("an index entry names a missing record");
                    continue;
                };
                match decode(&bytes) {
                    Ok(u) if u.id() == id => {
                        if keep(&u)? {
                            pending.push(u);
                            if pending.len() >= want {
                                break;
                            }
                        }
                    }
                    _ => self.flag_repair("a stored record does not decode"),
                }
            }
            if pending.is_empty() {
                break;
            }
            for r in verify_batch(std::mem::take(&mut pending)) {
                match r {
                    Ok(rec) => out.push(rec),
                    Err(_) => self.flag_repair("a stored record failed verification"),
                }
            }
        }
        Ok(out)
    }
}

/// Is an index value (`expiry8`, or empty for records that do not expire) expired at `now`?
fn is_expired(v: &[u8], now: Timestamp) -> bool {
    keys::u64_at(v, 0).is_some_and(|e| e <= now)
}
