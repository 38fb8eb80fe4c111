//! Writing records: the apply rules (duplicates, refused ids, revisions, withdrawals, profiles,
//! revocations, expiry, quotas), and how a batch's changes reach sled and then memory.
//!
//! A write has three steps, all under the store's writer mutex:
//! 1. **plan**: the rules decide each record's outcome by reading the in-memory state ([`Mem`])
//!    through a [`Plan`], which overlays the batch's own earlier changes (so a later record in a
//!    batch sees an earlier one) and records the changes as [`Op`]s. Nothing is written yet.
//! 2. **commit**: the ops go to sled in one transaction over `log` and `refused` (records stored
//!    and removed, markers set and dropped): after a crash, all of a batch or none of it is there.
//! 3. **absorb**: only once the transaction committed, the ops are applied to the in-memory state
//!    and the search index. If the commit fails, memory is untouched, like the disk.
//!
//! Planning needs no sled read at all (a duplicate, a head, a counter are memory lookups), so a new
//! listing costs sled one write.

use crate::{FastMap as HashMap, FastSet as HashSet};

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use troc_protocol::{Body, CancelReason, ListingKey, PublicKey, RecordId, RecordType, SignedRecord, Timestamp};

use super::keys::{self, Marker};
use super::mem::{DealFact, Extra, LINK_REFERENCE, Mem, deal_fact};
use super::{
    DealRefusal, MAX_RECORDS_PER_TRANSACTION, Outcome, Prepared, QuotaKind, Quotas, REVIEW_WINDOW_SECS, RefuseReason,
    StaleReason, Store, StoreError,
};

/// A deal record as the deal rules see it: from memory, or stored earlier in the same batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct DealRec {
    pub id: RecordId,
    pub rtype: RecordType,
    pub author: [u8; 32],
    pub created_at: Timestamp,
    /// The deal it names (`None` for proposals and agreements).
    pub deal: Option<RecordId>,
    pub fact: DealFact,
}

/// The parties and dates of an agreement, for the rules.
#[derive(Debug, Clone, Copy)]
struct Parties {
    author: [u8; 32],
    counterparty: [u8; 32],
}

impl Parties {
    fn has(&self, who: &[u8; 32]) -> bool {
        self.author == *who || self.counterparty == *who
    }

    fn other(&self, who: &[u8; 32]) -> [u8; 32] {
        if self.author == *who { self.counterparty } else { self.author }
    }
}

/// Why a deal record is not stored.
type Denied = Outcome;

fn deny(r: DealRefusal) -> Denied {
    Outcome::Refused(RefuseReason::Deal(r))
}

fn unknown() -> Denied {
    Outcome::Stale(StaleReason::UnknownDeal)
}

/// One change of a batch, in order.
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// Store record `rec` of the batch under `log` key `seq`.
    Insert { rec: usize, seq: u64 },
    /// Remove a stored record (its `log` key is `seq`).
    Remove { id: RecordId, seq: u64 },
    /// Set a refused-id marker.
    Mark { id: RecordId, marker: Marker },
    /// Drop a refused-id marker.
    Unmark { id: RecordId },
}

/// What removing a record found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    NotStored,
    /// Removed; of this type.
    Record(RecordType),
}

/// The current head of a replaceable address: a listing's current revision (`rank` = revision,
/// `expiry` = valid_until) or a profile (`rank` = created_at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub id: RecordId,
    pub rank: u64,
    pub expiry: Timestamp,
}

impl Head {
    /// Does `(rank, id)` beat this head? Higher rank wins; on a tie the greater id, so every node
    /// picks the same one whatever the arrival order.
    pub fn is_beaten_by(&self, rank: u64, id: &RecordId) -> bool {
        (rank, id) > (self.rank, &self.id)
    }
}

/// What removing a record needs to know about it.
#[derive(Debug, Clone, Copy)]
struct Info {
    seq: u64,
    author: [u8; 32],
    rtype: RecordType,
    /// The listing address of a listing or a withdrawal.
    key: Option<ListingKey>,
}

/// A batch's changes being decided: the in-memory state plus what the batch changed so far.
pub(super) struct Plan<'a> {
    mem: &'a Mem,
    pub next_seq: u64,
    pub ops: Vec<Op>,
    /// Records stored by this batch and not removed since.
    added: HashMap<RecordId, Info>,
    /// Records of `mem` removed by this batch.
    removed: HashSet<RecordId>,
    markers: HashMap<RecordId, Option<Marker>>,
    listing_heads: HashMap<([u8; 32], ListingKey), Option<Head>>,
    withdrawal_heads: HashMap<([u8; 32], ListingKey), Option<RecordId>>,
    profile_heads: HashMap<[u8; 32], Option<Head>>,
    total: i64,
    author_records: HashMap<[u8; 32], i64>,
    author_live: HashMap<[u8; 32], i64>,
    /// Deal records stored by this batch (and not removed since).
    batch_deals: HashMap<RecordId, DealRec>,
}

impl<'a> Plan<'a> {
    pub fn new(mem: &'a Mem) -> Self {
        Plan::with_capacity(mem, 0)
    }

    /// A plan for a batch of about `records` records: the maps every record touches are sized for
    /// it once, rather than grown and rehashed record by record (a batch is at most
    /// `MAX_RECORDS_PER_TRANSACTION`).
    pub fn with_capacity(mem: &'a Mem, records: usize) -> Self {
        Plan {
            mem,
            next_seq: mem.next_seq,
            ops: Vec::with_capacity(records),
            added: HashMap::with_capacity_and_hasher(records, Default::default()),
            removed: HashSet::default(),
            markers: HashMap::default(),
            listing_heads: HashMap::with_capacity_and_hasher(records, Default::default()),
            withdrawal_heads: HashMap::with_capacity_and_hasher(records, Default::default()),
            profile_heads: HashMap::default(),
            total: 0,
            author_records: HashMap::with_capacity_and_hasher(records, Default::default()),
            author_live: HashMap::with_capacity_and_hasher(records, Default::default()),
            batch_deals: HashMap::default(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reads: the overlay first, then memory.

    fn info(&self, id: &RecordId) -> Option<Info> {
        if let Some(i) = self.added.get(id) {
            return Some(*i);
        }
        if self.removed.contains(id) {
            return None;
        }
        let m = self.mem.get(id)?;
        let key = match m.extra {
            Extra::Listing { key, .. } | Extra::Withdrawal { key } => Some(key),
            _ => None,
        };
        Some(Info { seq: m.seq, author: *self.mem.person_key(m.author)?, rtype: m.rtype, key })
    }

    fn stored(&self, id: &RecordId) -> bool {
        self.added.contains_key(id) || (!self.removed.contains(id) && self.mem.contains(id))
    }

    fn marker(&self, id: &RecordId) -> Option<Marker> {
        match self.markers.get(id) {
            Some(m) => *m,
            None => self.mem.marker(id),
        }
    }

    pub fn listing_head(&self, author: &[u8; 32], key: &ListingKey) -> Option<Head> {
        if let Some(h) = self.listing_heads.get(&(*author, *key)) {
            return *h;
        }
        let m = self.mem.listing_head(author, key)?;
        match m.extra {
            Extra::Listing { revision, .. } => Some(Head { id: m.id, rank: u64::from(revision), expiry: m.expiry }),
            _ => None,
        }
    }

    fn withdrawal_head(&self, author: &[u8; 32], key: &ListingKey) -> Option<RecordId> {
        match self.withdrawal_heads.get(&(*author, *key)) {
            Some(h) => *h,
            None => self.mem.withdrawal_head(author, key).map(|m| m.id),
        }
    }

    fn profile_head(&self, author: &[u8; 32]) -> Option<Head> {
        match self.profile_heads.get(author) {
            Some(h) => *h,
            None => self.mem.profile_head(author).map(|m| Head { id: m.id, rank: m.created_at, expiry: m.expiry }),
        }
    }

    fn total(&self) -> u64 {
        self.mem.total().saturating_add_signed(self.total)
    }

    fn author_records(&self, author: &[u8; 32]) -> u64 {
        let d = self.author_records.get(author).copied().unwrap_or(0);
        u64::from(self.mem.person(author).records).saturating_add_signed(d)
    }

    fn author_live(&self, author: &[u8; 32]) -> u64 {
        let d = self.author_live.get(author).copied().unwrap_or(0);
        u64::from(self.mem.person(author).live).saturating_add_signed(d)
    }

    // -----------------------------------------------------------------------------------------
    // Changes.

    /// Stores record `rec` of the batch; a listing, withdrawal or profile becomes its address's
    /// head (the rules removed the previous one first).
    fn insert(&mut self, rec: usize, r: &SignedRecord) {
        let (id, author) = (r.id(), *r.author().as_bytes());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ops.push(Op::Insert { rec, seq });
        let key = match r.body() {
            Body::Listing(l) => {
                if self.listing_head(&author, &l.key).is_none() {
                    *self.author_live.entry(author).or_default() += 1;
                }
                let head = Head { id, rank: u64::from(l.revision), expiry: l.valid_until };
                self.listing_heads.insert((author, l.key), Some(head));
                Some(l.key)
            }
            Body::Withdrawal(w) => {
                self.withdrawal_heads.insert((author, w.listing_key), Some(id));
                Some(w.listing_key)
            }
            Body::Profile(_) => {
                self.profile_heads.insert(author, Some(Head { id, rank: r.created_at(), expiry: 0 }));
                None
            }
            _ => None,
        };
        if let Some((deal, fact)) = deal_fact(r.body()) {
            let rec = DealRec { id, rtype: r.record_type(), author, created_at: r.created_at(), deal, fact };
            self.batch_deals.insert(id, rec);
        }
        self.added.insert(id, Info { seq, author, rtype: r.record_type(), key });
        self.total += 1;
        *self.author_records.entry(author).or_default() += 1;
    }

    /// Removes a stored record; if it was the head of its address, the address loses its head.
    /// Refused markers are the caller's business.
    pub fn remove(&mut self, id: &RecordId) -> Removed {
        let Some(info) = self.info(id) else { return Removed::NotStored };
        self.batch_deals.remove(id);
        if self.added.remove(id).is_none() {
            self.removed.insert(*id);
        }
        self.ops.push(Op::Remove { id: *id, seq: info.seq });
        self.total -= 1;
        *self.author_records.entry(info.author).or_default() -= 1;
        match (info.rtype, info.key) {
            (RecordType::Listing, Some(key)) if self.listing_head(&info.author, &key).is_some_and(|h| h.id == *id) => {
                self.listing_heads.insert((info.author, key), None);
                *self.author_live.entry(info.author).or_default() -= 1;
            }
            (RecordType::Withdrawal, Some(key)) if self.withdrawal_head(&info.author, &key) == Some(*id) => {
                self.withdrawal_heads.insert((info.author, key), None);
            }
            (RecordType::Profile, _) if self.profile_head(&info.author).is_some_and(|h| h.id == *id) => {
                self.profile_heads.insert(info.author, None);
            }
            _ => {}
        }
        Removed::Record(info.rtype)
    }

    /// Remembers `id` (by `author`) as refused until `expiry`. An existing marker of the same author
    /// is extended, never shortened. `claim` marks a marker made from a revocation of a record we
    /// have not seen: it only claims the author, so it never overwrites a marker of another author
    /// made from an actual record.
    pub fn mark_refused(&mut self, id: &RecordId, author: &[u8; 32], expiry: Timestamp, claim: bool) {
        let expiry = match self.marker(id) {
            Some(m) if m.author != *author && claim => return,
            Some(m) if m.author == *author => m.expiry.max(expiry),
            _ => expiry,
        };
        let marker = Marker { expiry, author: *author };
        self.markers.insert(*id, Some(marker));
        self.ops.push(Op::Mark { id: *id, marker });
    }

    /// Drops the marker of `id`.
    pub fn unmark(&mut self, id: &RecordId) {
        if self.marker(id).is_some() {
            self.markers.insert(*id, None);
            self.ops.push(Op::Unmark { id: *id });
        }
    }

    /// Which quota, if any, refuses adding `added` records by `author`.
    fn quota(&self, q: &Quotas, author: &[u8; 32], added: u64) -> Option<QuotaKind> {
        if added == 0 {
            return None;
        }
        if self.total().saturating_add(added) > q.max_total_records as u64 {
            return Some(QuotaKind::TotalRecords);
        }
        if self.author_records(author).saturating_add(added) > q.max_records_per_author as u64 {
            return Some(QuotaKind::AuthorRecords);
        }
        None
    }

    /// Is `id` known dead for a record by `author` at `now` (before the batch's changes: used by
    /// the ingest pipeline to skip verifying what it would not store)?
    pub fn known(mem: &Mem, id: &RecordId, author: &PublicKey, now: Timestamp) -> Option<Outcome> {
        if mem.contains(id) {
            return Some(Outcome::Duplicate);
        }
        // A revocation marker (`NEVER`) is left to `apply_one`: it refuses only the types that a
        // revocation erases, and the type is not known here.
        mem.marker(id)
            .filter(|m| m.expiry != keys::NEVER && m.refuses(author.as_bytes(), now))
            .map(|_| Outcome::Stale(StaleReason::Refused))
    }

    /// Applies record `rec` of the batch: the rules of [`Store::apply`].
    pub fn apply_one(&mut self, rec: usize, r: &SignedRecord, now: Timestamp, q: &Quotas) -> Outcome {
        let id = r.id();
        if self.stored(&id) {
            return Outcome::Duplicate;
        }
        let author = *r.author().as_bytes();
        if let Some(m) = self.marker(&id).filter(|m| m.refuses(&author, now)) {
            // A revocation marker does not refuse a record that revocation does not erase (a deal
            // record, a withdrawal, a revocation), so every node keeps the same records whatever
            // the order they arrived in; an annulled agreement is refused below.
            if m.expiry != keys::NEVER || erased_by_revocation(r.record_type()) {
                return Outcome::Stale(StaleReason::Refused);
            }
        }
        if r.record_type() == RecordType::Agreement && self.annulled_before_arrival(r) {
            self.mark_refused(&id, &author, keys::NEVER, false);
            return Outcome::Stale(StaleReason::Refused);
        }
        if keys::expiry_of(r.header(), r.body()).is_some_and(|e| e <= now) {
            return Outcome::Stale(StaleReason::Expired);
        }
        if let Err(denied) = self.deal_rules(r) {
            return denied;
        }
        let scope = keys::scope_of(r.header(), r.body());
        let stored = |replaced| Outcome::Stored { id, scope: scope.clone(), replaced };
        let quota_refused = |k| Outcome::Refused(RefuseReason::Quota(k));

        match r.body() {
            Body::Listing(l) => {
                if self.withdrawal_head(&author, &l.key).is_some() {
                    return Outcome::Stale(StaleReason::Withdrawn);
                }
                match self.listing_head(&author, &l.key) {
                    Some(h) if !h.is_beaten_by(u64::from(l.revision), &id) => {
                        self.mark_refused(&id, &author, l.valid_until, false);
                        Outcome::Stale(StaleReason::OlderRevision)
                    }
                    Some(h) => {
                        // Replaces the current revision: one record out, one in.
                        self.remove(&h.id);
                        self.mark_refused(&h.id, &author, h.expiry, false);
                        self.insert(rec, r);
                        stored(Some(h.id))
                    }
                    None => {
                        if self.author_live(&author) >= q.max_live_listings_per_author as u64 {
                            return quota_refused(QuotaKind::LiveListings);
                        }
                        if let Some(k) = self.quota(q, &author, 1) {
                            return quota_refused(k);
                        }
                        self.insert(rec, r);
                        stored(None)
                    }
                }
            }
            Body::Withdrawal(w) => {
                if self.withdrawal_head(&author, &w.listing_key).is_some() {
                    return Outcome::Stale(StaleReason::AlreadyWithdrawn);
                }
                let current = self.listing_head(&author, &w.listing_key);
                if let Some(k) = self.quota(q, &author, u64::from(current.is_none())) {
                    return quota_refused(k);
                }
                if let Some(h) = current {
                    self.remove(&h.id);
                    self.mark_refused(&h.id, &author, h.expiry, false);
                }
                self.insert(rec, r);
                stored(current.map(|h| h.id))
            }
            Body::Profile(_) => {
                let current = self.profile_head(&author);
                if let Some(h) = current
                    && !h.is_beaten_by(r.created_at(), &id)
                {
                    return Outcome::Stale(StaleReason::OlderRevision);
                }
                if let Some(k) = self.quota(q, &author, u64::from(current.is_none())) {
                    return quota_refused(k);
                }
                if let Some(h) = current {
                    self.remove(&h.id);
                    self.mark_refused(&h.id, &author, now.saturating_add(keys::SUPERSEDED_MARKER_SECS), false);
                }
                self.insert(rec, r);
                stored(current.map(|h| h.id))
            }
            Body::Revocation(rv) => {
                let target = self.info(&rv.target);
                if let Some(t) = target
                    && !self.signed_by(&rv.target, &t, &author)
                {
                    return Outcome::Refused(RefuseReason::NotOwnRecord);
                }
                match target {
                    // What its author said alone and nobody built on: erased and refused for good.
                    Some(t) if erased_by_revocation(t.rtype) => {
                        if let Some(k) = self.quota(q, &author, 0) {
                            return quota_refused(k);
                        }
                        self.remove(&rv.target);
                        self.mark_refused(&rv.target, &author, keys::NEVER, false);
                        self.insert(rec, r);
                        stored(Some(rv.target))
                    }
                    // A deal record, a withdrawal or a revocation: kept; the revocation is stored
                    // beside it and its effect derived from both (section 14). An agreement both
                    // parties revoked is annulled.
                    Some(t) => {
                        if let Some(k) = self.quota(q, &author, 1) {
                            return quota_refused(k);
                        }
                        self.insert(rec, r);
                        if t.rtype == RecordType::Agreement && self.annulled(&rv.target) {
                            self.annul(&rv.target, &t.author);
                            return stored(Some(rv.target));
                        }
                        stored(None)
                    }
                    None => {
                        if let Some(k) = self.quota(q, &author, 1) {
                            return quota_refused(k);
                        }
                        // Unseen target: the marker only claims the author (see `mark_refused`); a
                        // deal record arriving later is not refused by it (see `apply_one`).
                        self.mark_refused(&rv.target, &author, keys::NEVER, true);
                        self.insert(rec, r);
                        stored(None)
                    }
                }
            }
            _ => {
                if let Some(k) = self.quota(q, &author, 1) {
                    return quota_refused(k);
                }
                self.insert(rec, r);
                stored(None)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Deal rules (`docs/protocol.md` section 14). They read only the records themselves (their
    // `created_at`, never `now`), so every node decides the same once it has the same records.

    /// A deal record by id: stored earlier in this batch, or in memory.
    fn deal_rec(&self, id: &RecordId) -> Option<DealRec> {
        if let Some(d) = self.batch_deals.get(id) {
            return Some(*d);
        }
        if self.removed.contains(id) {
            return None;
        }
        let m = self.mem.get(id)?;
        let fact = self.mem.deal_fact(id)?;
        let deal = match fact {
            DealFact::Proposal { .. } | DealFact::Agreement { .. } => None,
            _ => self.deal_ref_of(m),
        };
        Some(DealRec {
            id: *id,
            rtype: m.rtype,
            author: *self.mem.person_key(m.author)?,
            created_at: m.created_at,
            deal,
            fact,
        })
    }

    /// The deal a stored record names, from its reference link.
    fn deal_ref_of(&self, m: &super::mem::Meta) -> Option<RecordId> {
        match m.extra {
            Extra::Links { n, links } => links[..n as usize]
                .iter()
                .find(|(tag, _)| *tag == LINK_REFERENCE)
                .and_then(|&(_, k)| self.mem.deal_key(k)),
            _ => None,
        }
    }

    /// Every stored record naming `deal` (memory and this batch).
    pub(super) fn deal_records(&self, deal: &RecordId) -> Vec<DealRec> {
        let mut out: Vec<DealRec> = Vec::new();
        if let Some(k) = self.mem.deal_of(deal) {
            for &(_, _, _, slot) in self.mem.links(LINK_REFERENCE, k) {
                if let Some(m) = self.mem.meta(slot)
                    && !self.removed.contains(&m.id)
                    && let Some(d) = self.deal_rec(&m.id)
                {
                    out.push(d);
                }
            }
        }
        out.extend(self.batch_deals.values().filter(|d| d.deal.as_ref() == Some(deal)).copied());
        out
    }

    /// Whether `author` signed the stored record `id` (`t`): its author, or the second signer of a
    /// co-signed agreement or extension.
    fn signed_by(&self, id: &RecordId, t: &Info, author: &[u8; 32]) -> bool {
        t.author == *author
            || matches!(
                self.deal_rec(id).map(|d| d.fact),
                Some(DealFact::Agreement { counterparty, .. } | DealFact::Extension { counterparty, .. })
                    if counterparty == *author
            )
    }

    /// The authors of the stored revocations of `id` (memory and this batch).
    fn revokers(&self, id: &RecordId) -> Vec<[u8; 32]> {
        self.deal_records(id).iter().filter(|d| matches!(d.fact, DealFact::Revocation)).map(|d| d.author).collect()
    }

    /// Whether both parties of the stored agreement `id` revoked it.
    fn annulled(&self, id: &RecordId) -> bool {
        let Ok((_, p)) = self.agreement(id) else { return false };
        let by = self.revokers(id);
        by.contains(&p.author) && by.contains(&p.counterparty)
    }

    /// Whether both parties of the arriving agreement `r` already revoked it.
    fn annulled_before_arrival(&self, r: &SignedRecord) -> bool {
        let Body::Agreement(a) = r.body() else { return false };
        let by = self.revokers(&r.id());
        by.contains(r.author().as_bytes()) && by.contains(a.counterparty.as_bytes())
    }

    /// Annuls the agreement `id` (by `author`), which both parties revoked: the agreement and every
    /// record naming it (steps, acknowledgements, cancellations, extensions, reviews) are removed;
    /// the revocations stay (they carry the annulment to other nodes) and the agreement's id is
    /// refused for good, so nothing naming it is stored again (an unknown deal).
    fn annul(&mut self, id: &RecordId, author: &[u8; 32]) {
        for d in self.deal_records(id) {
            if !matches!(d.fact, DealFact::Revocation) {
                self.remove(&d.id);
            }
        }
        self.remove(id);
        self.mark_refused(id, author, keys::NEVER, false);
    }

    /// Whether the deal record `d` is undone by its author's revocation: revoked by its author
    /// (for an extension, by both its signers) and, for a record signed alone, not built on by the
    /// other party (no record of the deal by them, other than a revocation, dated at or after it).
    fn undone(&self, d: &DealRec, deal: &[DealRec], other: &[u8; 32]) -> bool {
        let by = self.revokers(&d.id);
        match d.fact {
            DealFact::Extension { counterparty, .. } => by.contains(&d.author) && by.contains(&counterparty),
            _ => {
                by.contains(&d.author)
                    && !deal.iter().any(|x| {
                        x.author == *other && x.created_at >= d.created_at && !matches!(x.fact, DealFact::Revocation)
                    })
            }
        }
    }

    /// The agreement `id` and its parties, or why the record naming it waits.
    fn agreement(&self, id: &RecordId) -> Result<(DealRec, Parties), Denied> {
        match self.deal_rec(id) {
            Some(d @ DealRec { fact: DealFact::Agreement { counterparty, .. }, .. }) => {
                Ok((d, Parties { author: d.author, counterparty }))
            }
            Some(_) => Err(deny(DealRefusal::WrongReference)),
            None => Err(unknown()),
        }
    }

    /// When the deal `agreement` ended, as far as the stored records say: the first completion or
    /// cancellation of it; without one, its due date (the last extension's, for a loan) or, for a
    /// deal without one, its start. The flag says whether a completion or cancellation decided it.
    fn deal_end(&self, agreement: &DealRec) -> (Timestamp, bool) {
        let all = self.deal_records(&agreement.id);
        let parties = match agreement.fact {
            DealFact::Agreement { counterparty, .. } => Parties { author: agreement.author, counterparty },
            _ => Parties { author: agreement.author, counterparty: agreement.author },
        };
        // Records undone by their author's revocation do not count (section 14, revocations).
        let records: Vec<DealRec> =
            all.iter().filter(|d| !self.undone(d, &all, &parties.other(&d.author))).copied().collect();
        let terminal = records
            .iter()
            .filter(|d| {
                d.rtype == RecordType::Completion
                    || matches!(d.fact, DealFact::Cancellation { reason } if !matches!(reason, CancelReason::Declined | CancelReason::Withdrawn))
            })
            .map(|d| d.created_at)
            .min();
        if let Some(t) = terminal {
            return (t, true);
        }
        let DealFact::Agreement { start, due, .. } = agreement.fact else { return (agreement.created_at, false) };
        let extended = records
            .iter()
            .filter_map(|d| if let DealFact::Extension { new_due, .. } = d.fact { Some(new_due) } else { None })
            .max();
        let end = match (due, extended) {
            (Some(d), Some(e)) => d.max(e),
            (Some(d), None) => d,
            (None, _) => start,
        };
        (end, false)
    }

    /// The deal rules: `Err` with the outcome when the record must not be stored (now).
    fn deal_rules(&self, r: &SignedRecord) -> Result<(), Denied> {
        let author = *r.author().as_bytes();
        let party = |agreement: &RecordId| -> Result<(DealRec, Parties), Denied> {
            let (a, p) = self.agreement(agreement)?;
            if p.has(&author) { Ok((a, p)) } else { Err(deny(DealRefusal::NotAParty)) }
        };
        match r.body() {
            Body::Handover(s) => party(&s.agreement).map(drop),
            Body::Return(s) => party(&s.agreement).map(drop),
            Body::Completion(s) => party(&s.agreement).map(drop),
            Body::Acknowledgement(a) => {
                party(&a.agreement)?;
                match self.deal_rec(&a.subject) {
                    None => Err(unknown()),
                    Some(d)
                        if matches!(d.rtype, RecordType::Handover | RecordType::Return)
                            && d.deal == Some(a.agreement)
                            && d.author != author =>
                    {
                        Ok(())
                    }
                    Some(_) => Err(deny(DealRefusal::WrongReference)),
                }
            }
            Body::Cancellation(c) => match self.deal_rec(&c.deal) {
                None => Err(unknown()),
                Some(DealRec { fact: DealFact::Agreement { counterparty, .. }, author: a, .. }) => {
                    if !(Parties { author: a, counterparty }).has(&author) {
                        return Err(deny(DealRefusal::NotAParty));
                    }
                    match c.reason {
                        CancelReason::Cancelled | CancelReason::NoShow | CancelReason::Dispute => Ok(()),
                        CancelReason::Declined | CancelReason::Withdrawn => Err(deny(DealRefusal::InvalidReason)),
                    }
                }
                Some(DealRec { fact: DealFact::Proposal { counterparty }, author: a, .. }) => {
                    if !(Parties { author: a, counterparty }).has(&author) {
                        return Err(deny(DealRefusal::NotAParty));
                    }
                    match c.reason {
                        CancelReason::Declined if author == counterparty => Ok(()),
                        CancelReason::Withdrawn if author == a => Ok(()),
                        _ => Err(deny(DealRefusal::InvalidReason)),
                    }
                }
                Some(_) => Err(deny(DealRefusal::WrongReference)),
            },
            Body::Extension(e) => {
                let (a, p) = party(&e.agreement)?;
                if !p.has(e.counterparty.as_bytes()) {
                    return Err(deny(DealRefusal::NotAParty));
                }
                match a.fact {
                    DealFact::Agreement { due: Some(_), start, .. } if e.new_due > start => Ok(()),
                    _ => Err(deny(DealRefusal::InvalidExtension)),
                }
            }
            Body::ReviewCommitment(c) => {
                self.review_rules(&author, r.created_at(), &c.agreement, c.subject.as_bytes())?;
                for d in self.deal_records(&c.agreement).iter().filter(|d| d.author == author) {
                    match d.fact {
                        DealFact::Commitment { .. } => return Err(deny(DealRefusal::DuplicateReview)),
                        DealFact::Review { .. } if d.id != c.review => {
                            return Err(deny(DealRefusal::DuplicateReview));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Body::Review(v) => {
                self.review_rules(&author, r.created_at(), &v.agreement, v.subject.as_bytes())?;
                for d in self.deal_records(&v.agreement).iter().filter(|d| d.author == author) {
                    match d.fact {
                        DealFact::Commitment { review, .. } if review != r.id() => {
                            return Err(deny(DealRefusal::CommitmentMismatch));
                        }
                        DealFact::Review { .. } => return Err(deny(DealRefusal::DuplicateReview)),
                        _ => {}
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What a review and a review commitment share: a known agreement, a party reviewing the other
    /// party, after the deal ended and within [`REVIEW_WINDOW_SECS`] of that.
    fn review_rules(
        &self,
        author: &[u8; 32],
        at: Timestamp,
        agreement: &RecordId,
        subject: &[u8; 32],
    ) -> Result<(), Denied> {
        let (a, p) = self.agreement(agreement)?;
        if !p.has(author) {
            return Err(deny(DealRefusal::NotAParty));
        }
        if p.other(author) != *subject {
            return Err(deny(DealRefusal::WrongSubject));
        }
        let (ended, decided) = self.deal_end(&a);
        if at < ended {
            return Err(Outcome::Stale(StaleReason::DealNotEnded));
        }
        if at > ended.saturating_add(REVIEW_WINDOW_SECS) {
            // Refused only when a completion or cancellation dated the end: without one, a late
            // completion on its way could still move the window (not stored, not penalised).
            return Err(if decided {
                deny(DealRefusal::ReviewWindowClosed)
            } else {
                Outcome::Stale(StaleReason::DealNotEnded)
            });
        }
        Ok(())
    }
}

/// The record types a revocation erases (deletes and refuses for good): what the author said alone
/// that nobody built on. Every other record (deal records, withdrawals, revocations) is kept and
/// the revocation stored beside it (`docs/protocol.md` section 14, revocations).
pub(crate) fn erased_by_revocation(t: RecordType) -> bool {
    matches!(t, RecordType::Profile | RecordType::Listing | RecordType::Vouch)
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
    /// - revocation: a target stored by someone who did not sign it: `Refused(NotOwnRecord)`; a
    ///   profile, listing or vouch: deleted and refused; any other record (deal records, reviews,
    ///   withdrawals, revocations): kept, the revocation stored beside it; an agreement both parties
    ///   revoked: annulled, with every record naming it (`docs/protocol.md` section 14).
    /// - quotas: `Refused(Quota(_))` when adding the record would exceed a quota (a replacement adds
    ///   nothing).
    pub fn apply(&self, batch: &[SignedRecord], now: Timestamp) -> Result<Vec<Outcome>, StoreError> {
        let mut prepared: Vec<Prepared> = batch.iter().cloned().map(Prepared::new).collect();
        self.apply_prepared(&mut prepared, now)
    }

    /// [`Store::apply`] of records prepared with [`Prepared::new`] (the ingest pipeline prepares
    /// them on its verification thread, so the writer does not index listings' words). The search
    /// documents are taken out of `batch`; the records stay.
    pub fn apply_prepared(&self, batch: &mut [Prepared], now: Timestamp) -> Result<Vec<Outcome>, StoreError> {
        let _w = self.writer();
        self.note_write()?;
        let q = self.inner.quotas;
        let mut out = Vec::with_capacity(batch.len());
        for part in batch.chunks_mut(MAX_RECORDS_PER_TRANSACTION) {
            #[cfg(test)]
            self.inner.apply_transactions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (ops, next_seq, outcomes) = {
                let mem = self.mem();
                let mut plan = Plan::with_capacity(&mem, part.len());
                // Proposals and agreements first, so that a record naming one later in the same
                // batch finds it; outcomes stay in the batch's order.
                let mut order: Vec<usize> = (0..part.len()).collect();
                order.sort_by_key(|&i| {
                    !matches!(part[i].record.record_type(), RecordType::Proposal | RecordType::Agreement)
                });
                let mut outcomes: Vec<Outcome> = vec![Outcome::Duplicate; part.len()];
                for i in order {
                    outcomes[i] = plan.apply_one(i, &part[i].record, now, &q);
                }
                (plan.ops, plan.next_seq, outcomes)
            };
            self.commit(&ops, |i| part.get(i).map(|p| p.record.bytes()))?;
            self.absorb(&ops, next_seq, part);
            out.extend(outcomes);
        }
        Ok(out)
    }

    /// Writes a plan's ops to sled in one transaction over `log` and `refused`. `bytes` gives the
    /// bytes of the batch's record `i`.
    pub(super) fn commit<'b>(&self, ops: &[Op], bytes: impl Fn(usize) -> Option<&'b [u8]>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let t = &self.inner.t;
        (&t.log, &t.refused)
            .transaction(|(log, refused)| {
                for op in ops {
                    match op {
                        Op::Insert { rec, seq } => {
                            let Some(b) = bytes(*rec) else {
                                return Err(ConflictableTransactionError::Abort(StoreError::CorruptMeta {
                                    what: "apply plan",
                                }));
                            };
                            log.insert(&keys::seq_key(*seq), b)?;
                        }
                        Op::Remove { seq, .. } => {
                            log.remove(&keys::seq_key(*seq))?;
                        }
                        Op::Mark { id, marker } => {
                            refused.insert(id.as_bytes(), &marker.encode()[..])?;
                        }
                        Op::Unmark { id } => {
                            refused.remove(id.as_bytes())?;
                        }
                    }
                }
                Ok(())
            })
            .map_err(StoreError::from)
    }

    /// Applies committed ops to the in-memory state, then to the search index. `batch` gives the
    /// inserted records (and their search documents, taken).
    pub(super) fn absorb(&self, ops: &[Op], next_seq: u64, batch: &mut [Prepared]) {
        let mut search_ops: Vec<(usize, Option<RecordId>)> = Vec::new();
        {
            let mut mem = self.mem_mut();
            for op in ops {
                match op {
                    Op::Insert { rec, seq } => {
                        if let Some(p) = batch.get(*rec) {
                            let r = &p.record;
                            mem.insert(*seq, r.id(), r.header(), r.body(), r.bytes().len());
                            if p.doc.is_some() {
                                search_ops.push((*rec, None));
                            }
                        }
                    }
                    Op::Remove { id, .. } => {
                        if mem.remove(id).is_some_and(|m| m.rtype == RecordType::Listing) {
                            search_ops.push((usize::MAX, Some(*id)));
                        }
                    }
                    Op::Mark { id, marker } => mem.set_marker(*id, *marker),
                    Op::Unmark { id } => mem.unmark(id),
                }
            }
            mem.next_seq = mem.next_seq.max(next_seq);
        }
        if search_ops.is_empty() {
            return;
        }
        let mut search = self.search_mut();
        for (rec, removed) in search_ops {
            match removed {
                Some(id) => {
                    search.remove_id(&id);
                }
                None => {
                    if let Some(doc) = batch.get_mut(rec).and_then(|p| p.doc.take()) {
                        search.upsert_document(doc);
                    }
                }
            }
        }
    }
}
