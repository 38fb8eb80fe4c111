//! Reading: single records (verified, or raw bytes for sync), sync scopes, listings, profiles,
//! deals, reviews, and the store's figures.
//!
//! The in-memory indexes give ids (and `log` keys) under a short read lock; the records are then
//! read from `log` and verified (in batches) before a `Signed` is handed out. A record whose bytes
//! fail is skipped with a warning and flags the store for a repair: a damaged record never fails a
//! whole query, and never crashes. A record the writer removed between the lookup and the read is
//! simply not there (no flag: that is a race, not damage).

use std::collections::BTreeSet;

use troc_protocol::{
    Listing, ListingKey, Profile, PublicKey, RecordId, RecordType, Review, Signed, SignedRecord, Timestamp, Unverified,
    Vouch, decode, verify_batch,
};

use super::error::CorruptReason;
use super::keys;
use super::mem::{Extra, LINK_PARTY, LINK_REFERENCE, LINK_SUBJECT, Mem, Meta};
use super::{ListingFilter, Scope, Store, StoreError, StoreStats};

/// Records verified together in one batch when reading lists.
const VERIFY_CHUNK: usize = 64;

/// A record to read: its id and `log` key.
type Loc = (RecordId, u64);

fn loc(m: &Meta) -> Loc {
    (m.id, m.seq)
}

/// Sorts `(created_at, loc)` entries by `(created_at, id)`, newest first if `desc`.
fn sort_entries(v: &mut [(Timestamp, Loc)], desc: bool) {
    if desc {
        v.sort_unstable_by_key(|e| std::cmp::Reverse((e.0, e.1.0)));
    } else {
        v.sort_unstable_by_key(|e| (e.0, e.1.0));
    }
}

impl Store {
    /// The record `id`, verified. A stored record whose bytes fail is a
    /// [`StoreError::CorruptRecord`] (and flags a repair).
    pub fn get(&self, id: &RecordId) -> Result<Option<SignedRecord>, StoreError> {
        let Some(seq) = self.mem().get(id).map(|m| m.seq) else {
            return Ok(None);
        };
        let Some(bytes) = self.inner.t.log.get(keys::seq_key(seq))? else {
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
        let Some(seq) = self.mem().get(id).map(|m| m.seq) else {
            return Ok(None);
        };
        Ok(self.inner.t.log.get(keys::seq_key(seq))?.map(|v| v.to_vec()))
    }

    pub fn contains(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.mem().contains(id))
    }

    /// Is `id` known dead (a superseded revision, a withdrawn listing's revision, a revoked record)?
    /// Catch-up uses it to not fetch such ids again.
    ///
    /// A marker made by a revocation of a record not seen yet only claims that record's author; the
    /// apply rules check the author, this does not (it has no record to check against).
    pub fn is_refused(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.mem().marker(id).is_some())
    }

    /// The live records of a sync scope as `(created_at, id)`, sorted by `(created_at, id)`, without
    /// the listings and vouches expired at `now` (and withdrawals past their retention).
    pub fn sync_items(&self, scope: &Scope, now: Timestamp) -> Result<Vec<(u64, RecordId)>, StoreError> {
        let mem = self.mem();
        let Some(s) = mem.scope_of(scope) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(u64, RecordId)> = mem
            .by_scope(s)
            .filter_map(|&(_, at, slot)| mem.meta(slot).filter(|m| m.expiry > now).map(|m| (at, m.id)))
            .collect();
        drop(mem);
        // In (created_at, slot) order already: only ties on created_at move.
        out.sort_unstable();
        Ok(out)
    }

    /// Every scope that has at least one record (expired or not), in key order: Global first.
    pub fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        let mut out: Vec<Scope> = self.mem().scopes().cloned().collect();
        out.sort_by_cached_key(|s| s.key_prefix().unwrap_or_default());
        Ok(out)
    }

    /// The current revision of the listing `(author, key)`, expired or not; `None` if there is none
    /// (never seen, withdrawn, revoked, or pruned).
    pub fn latest_listing(&self, author: &PublicKey, key: &ListingKey) -> Result<Option<Signed<Listing>>, StoreError> {
        let Some(id) = self.mem().listing_head(author.as_bytes(), key).map(|m| m.id) else {
            return Ok(None);
        };
        self.get_typed(&id, "listing")
    }

    /// The author's current profile.
    pub fn profile(&self, author: &PublicKey) -> Result<Option<Signed<Profile>>, StoreError> {
        let Some(id) = self.mem().profile_head(author.as_bytes()).map(|m| m.id) else {
            return Ok(None);
        };
        self.get_typed(&id, "profile")
    }

    fn get_typed<T: troc_protocol::RecordBody>(
        &self,
        id: &RecordId,
        expected: &'static str,
    ) -> Result<Option<Signed<T>>, StoreError> {
        match self.get(id)? {
            // Removed by the writer since the lookup.
            None => Ok(None),
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
        let mut candidates: Vec<(Timestamp, Loc)> = {
            let mem = self.mem();
            let community = match &filter.community {
                Some(c) => match mem.scope_of(&Scope::Community(c.clone())) {
                    Some(s) => Some(s),
                    None => return Ok(Vec::new()),
                },
                None => None,
            };
            let author = match &filter.author {
                Some(a) => match mem.person_of(a.as_bytes()) {
                    Some(p) => Some(p),
                    None => return Ok(Vec::new()),
                },
                None => None,
            };
            let keep = |m: &Meta| -> bool {
                let Extra::Listing { kind, category, .. } = m.extra else { return false };
                m.expiry > now
                    && author.is_none_or(|a| a == m.author)
                    && community.is_none_or(|c| c == m.scope)
                    && filter.kind.is_none_or(|k| k == kind)
                    && filter.category.is_none_or(|c| c == category)
            };
            let slots: Vec<u32> = if let Some(p) = author {
                mem.by_author(p).map(|&(_, _, s)| s).collect()
            } else if let Some(c) = community {
                mem.by_scope(c).map(|&(_, _, s)| s).collect()
            } else {
                mem.by_kind(filter.kind, filter.category).into_iter().map(|(_, s)| s).collect()
            };
            slots.into_iter().filter_map(|s| mem.meta(s)).filter(|m| keep(m)).map(|m| (m.created_at, loc(m))).collect()
        };
        sort_entries(&mut candidates, true);
        let limit = filter.limit.unwrap_or(usize::MAX);
        let recs = self.load_many(candidates.into_iter().map(|(_, l)| l), limit)?;
        Ok(recs.into_iter().filter_map(|r| r.downcast::<Listing>().ok()).collect())
    }

    /// The author's records, every type, newest first, at most `limit`.
    pub fn by_author(&self, author: &PublicKey, limit: usize) -> Result<Vec<SignedRecord>, StoreError> {
        let mut entries: Vec<(Timestamp, Loc)> = {
            let mem = self.mem();
            let Some(p) = mem.person_of(author.as_bytes()) else {
                return Ok(Vec::new());
            };
            // Enough candidates (corrupt ones are rare) without reading an author's whole history;
            // the whole group of the last created_at taken, so ties sort by id exactly.
            let want = limit.saturating_mul(2).max(limit.saturating_add(VERIFY_CHUNK));
            let mut out = Vec::new();
            for &(_, at, slot) in mem.by_author(p).rev() {
                if out.len() >= want && out.last().is_some_and(|&(t, _)| t != at) {
                    break;
                }
                if let Some(m) = mem.meta(slot) {
                    out.push((at, loc(m)));
                }
            }
            out
        };
        sort_entries(&mut entries, true);
        self.load_many(entries.into_iter().map(|(_, l)| l), limit)
    }

    /// A person's deals: the proposals, agreements and extensions they are a party of, and every
    /// record referencing those proposals and agreements (deal steps, cancellations, extensions,
    /// reviews, review commitments), oldest first.
    pub fn deals_of(&self, party: &PublicKey) -> Result<Vec<SignedRecord>, StoreError> {
        let found: BTreeSet<(Timestamp, RecordId, u64)> = {
            let mem = self.mem();
            let Some(p) = mem.person_of(party.as_bytes()) else {
                return Ok(Vec::new());
            };
            let mut found = BTreeSet::new();
            let mut deals = Vec::new();
            for &(_, _, at, slot) in mem.links(LINK_PARTY, p) {
                let Some(m) = mem.meta(slot) else { continue };
                found.insert((at, m.id, m.seq));
                if matches!(m.rtype, RecordType::Agreement | RecordType::Proposal) {
                    deals.push(m.id);
                }
            }
            for deal in deals {
                found.extend(referencing(&mem, &deal).into_iter().map(|(at, (id, seq))| (at, id, seq)));
            }
            found
        };
        self.load_many(found.into_iter().map(|(_, id, seq)| (id, seq)), usize::MAX)
    }

    /// The records naming an agreement (or a proposal, for cancellations), oldest first: handovers,
    /// returns, acknowledgements, completions, cancellations, extensions, reviews, review commitments.
    pub fn records_referencing(&self, deal: &RecordId) -> Result<Vec<SignedRecord>, StoreError> {
        let mut entries = referencing(&self.mem(), deal);
        sort_entries(&mut entries, false);
        self.load_many(entries.into_iter().map(|(_, l)| l), usize::MAX)
    }

    /// Records of type `t` about `subject` (reviews, review commitments, vouches), oldest first,
    /// with a filter on their metadata.
    fn about(&self, subject: &PublicKey, t: RecordType, keep: impl Fn(&Meta) -> bool) -> Vec<Loc> {
        let mem = self.mem();
        let Some(p) = mem.person_of(subject.as_bytes()) else {
            return Vec::new();
        };
        let mut entries: Vec<(Timestamp, Loc)> = mem
            .links(LINK_SUBJECT, p)
            .filter_map(|&(_, _, at, slot)| mem.meta(slot).filter(|m| m.rtype == t && keep(m)).map(|m| (at, loc(m))))
            .collect();
        drop(mem);
        sort_entries(&mut entries, false);
        entries.into_iter().map(|(_, l)| l).collect()
    }

    /// The reviews about `subject`, oldest first.
    pub fn reviews_of(&self, subject: &PublicKey) -> Result<Vec<Signed<Review>>, StoreError> {
        let locs = self.about(subject, RecordType::Review, |_| true);
        let recs = self.load_many(locs, usize::MAX)?;
        Ok(recs.into_iter().filter_map(|r| r.downcast::<Review>().ok()).collect())
    }

    /// The vouches for `subject` not expired at `now`, oldest first.
    pub fn vouches_of(&self, subject: &PublicKey, now: Timestamp) -> Result<Vec<Signed<Vouch>>, StoreError> {
        let locs = self.about(subject, RecordType::Vouch, |m| m.expiry > now);
        let recs = self.load_many(locs, usize::MAX)?;
        Ok(recs.into_iter().filter_map(|r| r.downcast::<Vouch>().ok()).collect())
    }

    /// Every stored record of the given types, read and verified `chunk` at a time and handed to `f`
    /// one chunk after another (so a caller folding them into its own state never holds them all).
    /// Returns how many were read. For the reputation service's full load.
    pub fn for_each_of_types(
        &self,
        types: &[RecordType],
        chunk: usize,
        mut f: impl FnMut(&[SignedRecord]),
    ) -> Result<u64, StoreError> {
        let locs: Vec<Loc> = {
            let mem = self.mem();
            mem.ids().filter_map(|id| mem.get(&id)).filter(|m| types.contains(&m.rtype)).map(loc).collect()
        };
        let mut read = 0u64;
        for part in locs.chunks(chunk.max(1)) {
            let recs = self.load_many(part.iter().copied(), usize::MAX)?;
            read += recs.len() as u64;
            f(&recs);
        }
        Ok(read)
    }

    /// Every stored record id, in id order. (An iterator over a snapshot taken now: the ids are
    /// in memory, sorted once.)
    pub fn all_ids(&self) -> impl Iterator<Item = Result<RecordId, StoreError>> + use<> {
        let mut ids: Vec<RecordId> = self.mem().ids().collect();
        ids.sort_unstable();
        ids.into_iter().map(Ok)
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = {
            let mem = self.mem();
            StoreStats {
                records: mem.total(),
                by_type: RecordType::ALL.iter().map(|&t| (t, mem.count_of(t))).collect(),
                live_listings: mem.live(),
                refused_ids: mem.markers() as u64,
                record_bytes: mem.bytes(),
                size_on_disk: 0,
            }
        };
        stats.size_on_disk = self.inner.db.size_on_disk()?;
        Ok(stats)
    }

    /// Reads and verifies records, in the order given, until `limit` are kept. Records gone since
    /// the lookup are skipped; corrupt ones are skipped and flag a repair.
    pub(super) fn load_many(
        &self,
        locs: impl IntoIterator<Item = Loc>,
        limit: usize,
    ) -> Result<Vec<SignedRecord>, StoreError> {
        let mut out = Vec::new();
        let mut pending: Vec<Unverified> = Vec::new();
        let mut locs = locs.into_iter();
        while out.len() < limit {
            let want = (limit - out.len()).min(VERIFY_CHUNK);
            pending.clear();
            for (id, seq) in locs.by_ref() {
                let Some(bytes) = self.inner.t.log.get(keys::seq_key(seq))? else { continue };
                match decode(&bytes) {
                    Ok(u) if u.id() == id => {
                        pending.push(u);
                        if pending.len() >= want {
                            break;
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

/// The records naming `deal`, as `(created_at, loc)` in set order, and the revocations of those
/// records (a revocation names the record it revokes).
fn referencing(mem: &Mem, deal: &RecordId) -> Vec<(Timestamp, Loc)> {
    let direct = |id: &RecordId| -> Vec<(Timestamp, Loc)> {
        let Some(d) = mem.deal_of(id) else { return Vec::new() };
        mem.links(LINK_REFERENCE, d).filter_map(|&(_, _, at, slot)| mem.meta(slot).map(|m| (at, loc(m)))).collect()
    };
    let mut out = direct(deal);
    let revoked: Vec<(Timestamp, Loc)> = out.iter().flat_map(|(_, (id, _))| direct(id)).collect();
    out.extend(revoked);
    out
}
