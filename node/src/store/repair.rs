//! Loading and repair: builds the in-memory state (and the search index) from the `log` and
//! `refused` trees, removing what the apply rules would not have kept.
//!
//! [`Store::open`] loads by decoding only after a clean close: the bytes were verified before they
//! were written, and decoding still catches bytes that no longer parse or hash to another record.
//! [`Store::check_and_repair`] also verifies every signature (batch verification); it runs at open
//! after a crash or when something inconsistent was flagged, and on demand. Steps:
//! 1. flag the store `needs_repair` (repair only), so an interrupted repair is redone at the next
//!    open;
//! 2. load the markers, dropping malformed ones;
//! 3. read `log` in chunks; decode (and verify) each chunk on every core, with the search documents
//!    of its listings; remove from `log` what fails; insert what passes into a fresh state, applying
//!    the rules a consistent store would have applied as it goes: of two revisions of an address,
//!    two profiles, two withdrawals, or a listing and a withdrawal of its address, the loser is
//!    removed (and refused, as `apply` would have);
//! 4. apply the stored revocations (their targets removed and refused);
//! 5. write the removals and markers in transactions, swap the new state in, clear the flag, flush.
//!
//! The `refused` set is not wholly derivable (a superseded revision's record is gone), so it is kept.

use troc_protocol::{Body, Header, RecordId, RecordType, SignedRecord, Timestamp, Unverified, decode, verify_batch};

use sled::Transactional;

use super::keys::{self, Marker};
use super::mem::{DealFact, Extra, LINK_REFERENCE, Mem};
use super::{IndexCheck, RepairReport, Store, StoreError};
use crate::search::{Document, SearchIndex};

/// Records read per chunk (decoded in parallel, then inserted in order).
const LOAD_CHUNK: usize = 4096;
/// Fixes written per transaction.
const FIX_CHUNK: usize = 1024;

/// A record read back: decoded, or decoded and verified.
enum Rec {
    Decoded(Unverified),
    Verified(SignedRecord),
}

impl Rec {
    fn id(&self) -> RecordId {
        match self {
            Rec::Decoded(u) => u.id(),
            Rec::Verified(s) => s.id(),
        }
    }

    fn header(&self) -> &Header {
        match self {
            Rec::Decoded(u) => u.header(),
            Rec::Verified(s) => s.header(),
        }
    }

    fn body(&self) -> &Body {
        match self {
            Rec::Decoded(u) => u.body(),
            Rec::Verified(s) => s.body(),
        }
    }
}

/// What a worker made of one `log` entry.
enum Loaded {
    /// Bytes that do not decode or verify, or a malformed key: removed.
    Bad(sled::IVec),
    Good {
        seq: u64,
        len: usize,
        rec: Box<Rec>,
        doc: Option<Box<Document>>,
    },
}

/// A change to the disk found while loading.
enum Fix {
    /// Remove the record at this `log` key.
    Remove(u64),
    /// Set this marker.
    Mark(RecordId, Marker),
}

/// The state being built.
struct Loader {
    mem: Mem,
    search: SearchIndex,
    fixes: Vec<Fix>,
    revocations: Vec<([u8; 32], RecordId)>,
    /// Records removed by the rules.
    removed: u64,
    /// Second copies of a record, removed.
    copies: u64,
}

impl Loader {
    /// Removes a record already inserted (it lost to a later one), refusing its id if `mark`.
    fn evict(&mut self, id: &RecordId, mark: Option<([u8; 32], Timestamp)>) {
        if let Some(m) = self.mem.remove(id) {
            self.search.remove_id(id);
            self.fixes.push(Fix::Remove(m.seq));
            self.removed += 1;
        }
        if let Some((author, expiry)) = mark {
            self.mark(id, &author, expiry, false);
        }
    }

    /// Drops a record not inserted (it lost), refusing its id if `mark`.
    fn reject(&mut self, seq: u64, id: &RecordId, mark: Option<([u8; 32], Timestamp)>) {
        self.fixes.push(Fix::Remove(seq));
        self.removed += 1;
        if let Some((author, expiry)) = mark {
            self.mark(id, &author, expiry, false);
        }
    }

    /// The marker rule of `apply` (extend, never shorten; a claim never overrides another author).
    fn mark(&mut self, id: &RecordId, author: &[u8; 32], expiry: Timestamp, claim: bool) {
        let old = self.mem.marker(id);
        let expiry = match old {
            Some(m) if m.author != *author && claim => return,
            Some(m) if m.author == *author => m.expiry.max(expiry),
            _ => expiry,
        };
        let marker = Marker { expiry, author: *author };
        if old != Some(marker) {
            self.mem.set_marker(*id, marker);
            self.fixes.push(Fix::Mark(*id, marker));
        }
    }

    /// Inserts one record read back, resolving conflicts with what is already in.
    fn load(&mut self, seq: u64, len: usize, rec: &Rec, doc: Option<Document>) {
        let (id, header, body) = (rec.id(), rec.header(), rec.body());
        let author = *header.author.as_bytes();
        if self.mem.contains(&id) {
            // A second copy of a record: damage (bytes written under the wrong key), not a rule.
            self.fixes.push(Fix::Remove(seq));
            self.copies += 1;
            return;
        }
        match body {
            Body::Listing(l) => {
                if self.mem.withdrawal_head(&author, &l.key).is_some() {
                    self.reject(seq, &id, Some((author, l.valid_until)));
                    return;
                }
                if let Some(h) = self.mem.listing_head(&author, &l.key) {
                    let Extra::Listing { revision, .. } = h.extra else { return };
                    let (hid, hexpiry) = (h.id, h.expiry);
                    if (l.revision, id) > (revision, hid) {
                        self.evict(&hid, Some((author, hexpiry)));
                    } else {
                        self.reject(seq, &id, Some((author, l.valid_until)));
                        return;
                    }
                }
            }
            Body::Withdrawal(w) => {
                if let Some(h) = self.mem.withdrawal_head(&author, &w.listing_key) {
                    // Two withdrawals of one address: the greater id stays.
                    let hid = h.id;
                    if id > hid {
                        self.evict(&hid, None);
                    } else {
                        self.reject(seq, &id, None);
                        return;
                    }
                }
                if let Some(h) = self.mem.listing_head(&author, &w.listing_key) {
                    let (hid, hexpiry) = (h.id, h.expiry);
                    self.evict(&hid, Some((author, hexpiry)));
                }
            }
            Body::Profile(_) => {
                if let Some(h) = self.mem.profile_head(&author) {
                    let (hid, hat) = (h.id, h.created_at);
                    if (header.created_at, id) > (hat, hid) {
                        let expiry = header.created_at.saturating_add(keys::SUPERSEDED_MARKER_SECS);
                        self.evict(&hid, Some((author, expiry)));
                    } else {
                        let expiry = hat.saturating_add(keys::SUPERSEDED_MARKER_SECS);
                        self.reject(seq, &id, Some((author, expiry)));
                        return;
                    }
                }
            }
            Body::Revocation(r) => self.revocations.push((author, r.target)),
            _ => {}
        }
        self.mem.insert(seq, id, header, body, len);
        if let Some(doc) = doc {
            self.search.upsert_document(doc);
        }
    }

    /// Applies the stored revocations as `apply` does: a profile, listing or vouch stored by the
    /// same author is removed and refused; an agreement revoked by both its parties is annulled
    /// (removed with every record naming it, and refused); any other stored target is kept; an
    /// unseen target is refused (a marker that only claims the author).
    fn revoke(&mut self) {
        let revocations = std::mem::take(&mut self.revocations);
        for (author, target) in &revocations {
            let Some(m) = self.mem.get(target) else {
                self.mark(target, author, keys::NEVER, true);
                continue;
            };
            let (rtype, target_author) = (m.rtype, self.mem.person_key(m.author).copied());
            if target_author == Some(*author) && super::apply::erased_by_revocation(rtype) {
                self.evict(target, Some((*author, keys::NEVER)));
            }
        }
        for (author, target) in &revocations {
            let Some(m) = self.mem.get(target) else { continue };
            if m.rtype != RecordType::Agreement || self.mem.person_key(m.author) != Some(author) {
                continue;
            }
            let Some(DealFact::Agreement { counterparty, .. }) = self.mem.deal_fact(target) else { continue };
            if !revocations.contains(&(counterparty, *target)) {
                continue;
            }
            // Annulled: the agreement and what names it (not the revocations, which carry it).
            let named: Vec<RecordId> = self
                .mem
                .deal_of(target)
                .map(|k| {
                    self.mem
                        .links(LINK_REFERENCE, k)
                        .filter_map(|&(_, _, _, slot)| self.mem.meta(slot))
                        .filter(|m| m.rtype != RecordType::Revocation)
                        .map(|m| m.id)
                        .collect()
                })
                .unwrap_or_default();
            for id in named {
                self.evict(&id, None);
            }
            self.evict(target, Some((*author, keys::NEVER)));
        }
    }
}

/// Decodes (and verifies) a slice of `log` entries, with the search documents of the listings.
fn load_slice(items: &[(sled::IVec, sled::IVec)], verify: bool) -> Vec<Loaded> {
    let mut out = Vec::with_capacity(items.len());
    let mut pending: Vec<(usize, u64, usize, Unverified)> = Vec::new();
    for (k, v) in items {
        match (keys::seq_of(k), decode(v)) {
            (Some(seq), Ok(u)) => {
                pending.push((out.len(), seq, v.len(), u));
                out.push(Loaded::Bad(k.clone()));
            }
            _ => out.push(Loaded::Bad(k.clone())),
        }
    }
    let doc = |rec: &Rec| match rec.body() {
        Body::Listing(l) => Some(Box::new(Document::new(rec.id(), &rec.header().author, rec.header().created_at, l))),
        _ => None,
    };
    if verify {
        let (places, us): (Vec<_>, Vec<_>) = pending.into_iter().map(|(i, s, n, u)| ((i, s, n), u)).unzip();
        for ((i, seq, len), r) in places.into_iter().zip(verify_batch(us)) {
            if let Ok(s) = r {
                let rec = Box::new(Rec::Verified(s));
                out[i] = Loaded::Good { seq, len, doc: doc(&rec), rec };
            }
        }
    } else {
        for (i, seq, len, u) in pending {
            let rec = Box::new(Rec::Decoded(u));
            out[i] = Loaded::Good { seq, len, doc: doc(&rec), rec };
        }
    }
    out
}

/// [`load_slice`] over a chunk, split between the cores.
fn load_chunk(items: &[(sled::IVec, sled::IVec)], verify: bool) -> Vec<Loaded> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let per = items.len().div_ceil(threads).max(1);
    if threads == 1 || items.len() < 64 {
        return load_slice(items, verify);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(per).map(|part| s.spawn(move || load_slice(part, verify))).collect();
        let mut out = Vec::with_capacity(items.len());
        for (h, part) in handles.into_iter().zip(items.chunks(per)) {
            match h.join() {
                Ok(v) => out.extend(v),
                // A worker cannot panic on bad bytes (decode returns errors); if it did anyway,
                // treat its part as unreadable rather than losing the rest.
                Err(_) => out.extend(part.iter().map(|(k, _)| Loaded::Bad(k.clone()))),
            }
        }
        out
    })
}

impl Store {
    /// Re-verifies every record (batch verification, on every core), removes the records whose
    /// bytes do not decode or verify, and the ones the apply rules would not keep, and rebuilds
    /// every in-memory index and the search index from the rest.
    pub fn check_and_repair(&self) -> Result<RepairReport, StoreError> {
        self.rebuild(true)
    }

    /// Builds the in-memory state from the trees (see the module documentation); `verify` also
    /// checks every signature.
    pub(super) fn rebuild(&self, verify: bool) -> Result<RepairReport, StoreError> {
        let _w = self.writer();
        self.note_write()?;
        let t = &self.inner.t;
        let mut report = RepairReport::default();

        // 1.
        if verify {
            t.meta.insert(keys::META_NEEDS_REPAIR, &[1u8])?;
            t.meta.flush()?;
        }

        // 2.–4.
        let Scan { mut loader, bad_markers, bad_keys, checked } = self.scan(verify)?;
        for k in &bad_markers {
            t.refused.remove(k)?;
        }
        report.bad_markers_removed = bad_markers.len() as u64;
        report.checked = checked;
        for k in &bad_keys {
            tracing::warn!(key = %hex::encode(k), "removing a corrupt record");
            t.log.remove(k)?;
        }
        report.corrupt_removed = bad_keys.len() as u64 + loader.copies;
        report.inconsistent_removed = loader.removed;
        report.kept = report.checked.saturating_sub(report.corrupt_removed + report.inconsistent_removed);

        // 5.
        for part in loader.fixes.chunks(FIX_CHUNK) {
            (&t.log, &t.refused)
                .transaction(|(log, refused)| {
                    for fix in part {
                        match fix {
                            Fix::Remove(seq) => {
                                log.remove(&keys::seq_key(*seq))?;
                            }
                            Fix::Mark(id, m) => {
                                refused.insert(id.as_bytes(), &m.encode()[..])?;
                            }
                        }
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
                })
                .map_err(StoreError::from)?;
        }
        // Sequence numbers are never reused, even those of records removed at the end of the log.
        let last_seq = t.log.last()?.and_then(|(k, _)| keys::seq_of(&k)).map_or(0, |s| s + 1);
        loader.mem.next_seq = loader.mem.next_seq.max(last_seq).max(self.mem().next_seq);
        loader.search.shrink_to_fit();
        *self.mem_mut() = loader.mem;
        *self.search_mut() = loader.search;

        if verify || !loader.fixes.is_empty() || !bad_keys.is_empty() {
            t.meta.remove(keys::META_NEEDS_REPAIR)?;
            self.inner.db.flush()?;
        }
        Ok(report)
    }

    /// Steps 2 to 4 of the module documentation, reading the trees and changing nothing: the
    /// state the records make, the fixes that would make the disk agree with it, and what is
    /// unreadable. The caller holds the writer lock, so the trees do not move underneath.
    fn scan(&self, verify: bool) -> Result<Scan, StoreError> {
        let t = &self.inner.t;
        // 2.
        let mut loader = Loader {
            mem: Mem::default(),
            search: SearchIndex::new(),
            fixes: Vec::new(),
            revocations: Vec::new(),
            removed: 0,
            copies: 0,
        };
        let mut bad_markers = Vec::new();
        for item in t.refused.iter() {
            let (k, v) = item?;
            match (keys::record_key(&k), Marker::decode(&v)) {
                (Some(id), Some(m)) => loader.mem.set_marker(id, m),
                _ => bad_markers.push(k),
            }
        }

        // 3.
        let mut after: Option<sled::IVec> = None;
        let mut bad_keys: Vec<sled::IVec> = Vec::new();
        let mut checked = 0u64;
        loop {
            let range = match &after {
                None => t.log.range::<&[u8], _>(..),
                Some(a) => t.log.range::<&[u8], _>((std::ops::Bound::Excluded(a.as_ref()), std::ops::Bound::Unbounded)),
            };
            let mut chunk = Vec::with_capacity(LOAD_CHUNK);
            for item in range.take(LOAD_CHUNK) {
                chunk.push(item?);
            }
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            checked += chunk.len() as u64;
            for loaded in load_chunk(&chunk, verify) {
                match loaded {
                    Loaded::Bad(k) => bad_keys.push(k),
                    Loaded::Good { seq, len, rec, doc } => loader.load(seq, len, &rec, doc.map(|d| *d)),
                }
            }
        }

        // 4.
        loader.revoke();
        Ok(Scan { loader, bad_markers, bad_keys, checked })
    }

    /// Checks, without changing anything, that the live in-memory indexes (built at open, then
    /// kept up to date by every write since) are exactly what the records make: rebuilds a fresh
    /// state from `log` and `refused` (every signature verified) and compares the two, index by
    /// index, by record id rather than slot. Also counts the records that do not read back and
    /// those the apply rules would not keep (a repair would remove both). Holds the writer lock
    /// for the whole check (ingest waits): an on-demand diagnostic, not for every request.
    pub fn check_indexes(&self) -> Result<IndexCheck, StoreError> {
        let _w = self.writer();
        let started = std::time::Instant::now();
        let Scan { loader, bad_markers, bad_keys, checked } = self.scan(true)?;
        let mut check = IndexCheck {
            records: checked,
            unreadable: bad_keys.len() as u64 + loader.copies,
            inconsistent: loader.removed,
            bad_markers: bad_markers.len() as u64,
            ..IndexCheck::default()
        };
        let fresh = loader.mem.canonical();
        let live = self.mem().canonical();
        let (mut i, mut j) = (0, 0);
        let note = |check: &mut IndexCheck, what: &str, line: &str| {
            check.differences += 1;
            if check.examples.len() < IndexCheck::MAX_EXAMPLES {
                check.examples.push(format!("{what}: {line}"));
            }
        };
        // Both are sorted: a merge gives the lines only one side has.
        while i < fresh.len() || j < live.len() {
            match (fresh.get(i), live.get(j)) {
                (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
                (Some(a), Some(b)) if a < b => {
                    note(&mut check, "only in the records", a);
                    i += 1;
                }
                (Some(_), Some(b)) | (None, Some(b)) => {
                    note(&mut check, "only in the live indexes", b);
                    j += 1;
                }
                (Some(a), None) => {
                    note(&mut check, "only in the records", a);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        // The search index: the same current listings, and no others.
        let search = self.search_index();
        for id in loader.mem.ids() {
            if loader.search.contains(&id) != search.contains(&id) {
                check.search_differences += 1;
                if check.examples.len() < IndexCheck::MAX_EXAMPLES {
                    check.examples.push(format!("search index: listing {id} indexed {}", search.contains(&id)));
                }
            }
        }
        if loader.search.len() != search.len() {
            check.search_differences += 1;
            if check.examples.len() < IndexCheck::MAX_EXAMPLES {
                check.examples.push(format!(
                    "search index: {} listings, the records make {}",
                    search.len(),
                    loader.search.len()
                ));
            }
        }
        check.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(check)
    }
}

/// What [`Store::scan`] read.
struct Scan {
    loader: Loader,
    bad_markers: Vec<sled::IVec>,
    bad_keys: Vec<sled::IVec>,
    checked: u64,
}
