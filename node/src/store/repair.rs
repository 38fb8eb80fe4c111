//! Check and repair: re-verifies every stored record and rebuilds every index from the records.
//!
//! It runs at open when the previous run did not close cleanly (or saw something inconsistent), and
//! on demand. Steps:
//! 1. flag the store `needs_repair` (so an interrupted repair is redone at the next open: the steps
//!    below are not one transaction, but each is idempotent);
//! 2. clear every derived tree (`heads`, `by_*`, `links`, `counts`);
//! 3. read `records` in chunks, decode, check that each key is its record's id, batch-verify;
//!    remove what fails; write the index entries and counters of what passes;
//! 4. re-derive the heads (current listing revision per address, withdrawal per address, current
//!    profile per author) and apply the rules a consistent store would have applied: superseded
//!    revisions and profiles, listings of withdrawn addresses and revoked records are removed;
//! 5. clear the flag and flush.
//!
//! The `refused` set is not wholly derivable (a superseded revision's record is gone), so it is kept:
//! malformed markers are dropped, the `by_expiry` entries of the others rebuilt, and the targets of
//! stored revocations re-marked.

use std::collections::HashMap;

use troc_protocol::{Body, ListingKey, PublicKey, RecordId, Timestamp, Unverified, decode, verify_batch};

use super::apply::Removed;
use super::keys::{self, ListingHead, Marker, ProfileHead};
use super::{RepairReport, Store, StoreError};

/// Records read and verified per chunk (and written per transaction).
const REPAIR_CHUNK: usize = 256;

/// A listing address: author and key.
type Address = (PublicKey, ListingKey);

/// What step 4 needs to know about each kept record, gathered in step 3.
#[derive(Default)]
struct Seen {
    /// Every revision of every listing address: `(revision, id, valid_until)`.
    listings: HashMap<Address, Vec<(u32, RecordId, Timestamp)>>,
    /// Every withdrawal of every address.
    withdrawals: HashMap<Address, Vec<RecordId>>,
    /// Every profile of every author: `(created_at, id)`.
    profiles: HashMap<PublicKey, Vec<(Timestamp, RecordId)>>,
    /// Every revocation: `(author, target)`.
    revocations: Vec<(PublicKey, RecordId)>,
}

/// A change step 4 makes, written in transactions of [`REPAIR_CHUNK`].
enum Fix {
    ListingHead(PublicKey, ListingKey, ListingHead),
    WithdrawalHead(PublicKey, ListingKey, RecordId),
    ProfileHead(PublicKey, ProfileHead),
    /// Remove a record that should not be stored, and refuse its id until `expiry`.
    Remove {
        id: RecordId,
        author: PublicKey,
        expiry: Timestamp,
    },
    /// Refuse a revoked id (removing it if stored by the same author).
    Revoke {
        author: PublicKey,
        target: RecordId,
    },
}

impl Store {
    /// Re-verifies every record (batch verification, in chunks), removes the records whose bytes do
    /// not decode or verify or whose key is not their id, and rebuilds every index from the records.
    pub fn check_and_repair(&self) -> Result<RepairReport, StoreError> {
        let _w = self.writer();
        let t = &self.inner.t;
        let mut report = RepairReport::default();

        // 1, 2.
        t.meta.insert(keys::META_NEEDS_REPAIR, &[1u8])?;
        t.meta.flush()?;
        for tree in [&t.heads, &t.by_author, &t.by_scope, &t.by_kind, &t.by_expiry, &t.links, &t.counts] {
            tree.clear()?;
        }
        for item in t.refused.iter() {
            let (k, v) = item?;
            match (keys::record_key(&k), Marker::decode(&v)) {
                (Some(id), Some(m)) => {
                    if m.expiry != keys::NEVER {
                        t.by_expiry.insert(keys::expiry_key(keys::EXPIRY_MARKER, m.expiry, &id), &[])?;
                    }
                }
                _ => {
                    t.refused.remove(&k)?;
                    report.bad_markers_removed += 1;
                }
            }
        }

        // 3.
        let mut seen = Seen::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let range = match &after {
                None => t.records.range::<&[u8], _>(..),
                Some(a) => {
                    t.records.range::<&[u8], _>((std::ops::Bound::Excluded(a.as_slice()), std::ops::Bound::Unbounded))
                }
            };
            let mut chunk = Vec::with_capacity(REPAIR_CHUNK);
            for item in range.take(REPAIR_CHUNK) {
                chunk.push(item?);
            }
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.to_vec());

            let mut bad: Vec<sled::IVec> = Vec::new();
            let mut candidates: Vec<(sled::IVec, Unverified)> = Vec::new();
            for (k, v) in chunk {
                report.checked += 1;
                match (keys::record_key(&k), decode(&v)) {
                    (Some(id), Ok(u)) if u.id() == id => candidates.push((k, u)),
                    _ => bad.push(k),
                }
            }
            let (ks, us): (Vec<_>, Vec<_>) = candidates.into_iter().unzip();
            let mut good = Vec::with_capacity(us.len());
            for (k, r) in ks.into_iter().zip(verify_batch(us)) {
                match r {
                    Ok(rec) => good.push(rec),
                    Err(_) => bad.push(k),
                }
            }
            for k in &bad {
                tracing::warn!(key = %hex::encode(k), "removing a corrupt record");
                t.records.remove(k)?;
            }
            report.corrupt_removed += bad.len() as u64;
            t.transact(|tx| {
                for rec in &good {
                    tx.index_record(&rec.id(), rec.header(), rec.body(), rec.bytes().len() as u64)?;
                }
                Ok(())
            })?;
            for rec in &good {
                let author = *rec.author();
                match rec.body() {
                    Body::Listing(l) => {
                        seen.listings.entry((author, l.key)).or_default().push((l.revision, rec.id(), l.valid_until))
                    }
                    Body::Withdrawal(w) => seen.withdrawals.entry((author, w.listing_key)).or_default().push(rec.id()),
                    Body::Profile(_) => seen.profiles.entry(author).or_default().push((rec.created_at(), rec.id())),
                    Body::Revocation(r) => seen.revocations.push((author, r.target)),
                    _ => {}
                }
            }
        }

        // 4.
        let mut fixes = Vec::new();
        for ((author, key), mut ids) in seen.withdrawals {
            ids.sort_unstable();
            if let Some(keep) = ids.pop() {
                fixes.push(Fix::WithdrawalHead(author, key, keep));
            }
            for id in ids {
                fixes.push(Fix::Remove { id, author, expiry: 0 });
            }
            // Every revision of a withdrawn address goes.
            for (_, id, valid_until) in seen.listings.remove(&(author, key)).unwrap_or_default() {
                fixes.push(Fix::Remove { id, author, expiry: valid_until });
            }
        }
        for ((author, key), mut revisions) in seen.listings {
            revisions.sort_unstable();
            if let Some((revision, id, valid_until)) = revisions.pop() {
                fixes.push(Fix::ListingHead(author, key, ListingHead { id, revision, valid_until }));
            }
            for (_, id, valid_until) in revisions {
                fixes.push(Fix::Remove { id, author, expiry: valid_until });
            }
        }
        for (author, mut profiles) in seen.profiles {
            profiles.sort_unstable();
            let Some((created_at, id)) = profiles.pop() else { continue };
            fixes.push(Fix::ProfileHead(author, ProfileHead { id, created_at }));
            for (_, id) in profiles {
                fixes.push(Fix::Remove { id, author, expiry: created_at.saturating_add(keys::SUPERSEDED_MARKER_SECS) });
            }
        }
        // Revocations last: revoking a current revision or profile then also drops its head.
        for (author, target) in seen.revocations {
            fixes.push(Fix::Revoke { author, target });
        }
        for part in fixes.chunks(REPAIR_CHUNK) {
            report.inconsistent_removed += t.transact(|tx| {
                let mut removed = 0u64;
                for fix in part {
                    match fix {
                        Fix::ListingHead(author, key, head) => tx.set_listing_head(author, key, *head)?,
                        Fix::WithdrawalHead(author, key, id) => {
                            tx.heads.insert(keys::head_withdrawal(author, key), id.as_bytes())?;
                        }
                        Fix::ProfileHead(author, head) => {
                            tx.heads.insert(keys::head_profile(author), head.encode())?;
                        }
                        Fix::Remove { id, author, expiry } => {
                            if tx.remove_record(id)? != Removed::NotStored {
                                removed += 1;
                            }
                            if *expiry > 0 {
                                tx.mark_refused(id, author, *expiry, false)?;
                            }
                        }
                        Fix::Revoke { author, target } => {
                            let stored = tx.records.get(target.as_bytes())?;
                            let same_author = stored
                                .as_ref()
                                .and_then(|b| decode(b).ok())
                                .is_some_and(|u| u.header().author == *author);
                            if same_author && tx.remove_record(target)? != Removed::NotStored {
                                removed += 1;
                            }
                            // A target stored by someone else is not touched (a valid revocation
                            // cannot name one); the marker then only claims the author.
                            tx.mark_refused(target, author, keys::NEVER, !same_author)?;
                        }
                    }
                }
                Ok(removed)
            })?;
        }
        report.kept = report.checked.saturating_sub(report.corrupt_removed + report.inconsistent_removed);

        // 5.
        t.meta.remove(keys::META_NEEDS_REPAIR)?;
        self.inner.db.flush()?;
        Ok(report)
    }
}
