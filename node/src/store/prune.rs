//! Pruning: removes what has expired, so the store (and every sync set) only holds what is still
//! worth keeping.
//!
//! The `by_expiry` tree orders expiring records and refused-id markers by expiry, so a prune reads
//! only what it removes: listings past `valid_until`, vouches past `expires_at`, withdrawals past
//! their retention (`created_at` + the longest listing lifetime + one day: by then every revision
//! they refuse has expired), and refused-id markers past theirs.

use troc_protocol::{RecordId, RecordType, Timestamp};

use super::apply::Removed;
use super::keys;
use super::{PruneReport, Store, StoreError};

/// Entries removed per prune transaction.
const PRUNE_CHUNK: usize = 512;

impl Store {
    /// Removes the listings and vouches expired at `now` (record and indexes; an expired current
    /// revision leaves its address without one), the withdrawals past their retention, and the
    /// refused-id markers past their expiry.
    pub fn prune(&self, now: Timestamp) -> Result<PruneReport, StoreError> {
        let _w = self.writer();
        let t = &self.inner.t;
        let mut report = PruneReport::default();

        for tag in [keys::EXPIRY_RECORD, keys::EXPIRY_MARKER] {
            let (start, end) = keys::expiry_range(tag, now);
            loop {
                // Collect a chunk outside the transaction (transactions cannot scan), then remove
                // it in one. The writer lock keeps the set stable in between.
                let mut chunk: Vec<(u64, RecordId)> = Vec::with_capacity(PRUNE_CHUNK);
                let mut malformed = Vec::new();
                for k in t.by_expiry.range(start.clone()..=end.clone()).keys().take(PRUNE_CHUNK) {
                    let k = k?;
                    match keys::expiry_tail(&k) {
                        Some(e) => chunk.push(e),
                        None => malformed.push(k),
                    }
                }
                for k in &malformed {
                    t.by_expiry.remove(k)?;
                }
                if chunk.is_empty() && malformed.is_empty() {
                    break;
                }
                let part = t.transact(|tx| {
                    let mut r = PruneReport::default();
                    for (expiry, id) in &chunk {
                        // The entry itself goes in every case (a dangling one included).
                        tx.by_expiry.remove(keys::expiry_key(tag, *expiry, id))?;
                        if tag == keys::EXPIRY_MARKER {
                            let marker = tx.refused.get(id.as_bytes())?.and_then(|v| keys::Marker::decode(&v));
                            if marker.is_some_and(|m| m.expiry == *expiry) {
                                tx.refused.remove(id.as_bytes())?;
                                r.markers += 1;
                            }
                            continue;
                        }
                        match tx.remove_record(id)? {
                            Removed::Record(RecordType::Listing) => r.listings += 1,
                            Removed::Record(RecordType::Vouch) => r.vouches += 1,
                            Removed::Record(RecordType::Withdrawal) => r.withdrawals += 1,
                            Removed::Record(_) | Removed::Corrupt => tx.flag_repair("unexpected by_expiry entry")?,
                            Removed::NotStored => {}
                        }
                    }
                    Ok(r)
                })?;
                report.listings += part.listings;
                report.vouches += part.vouches;
                report.withdrawals += part.withdrawals;
                report.markers += part.markers;
            }
        }
        Ok(report)
    }
}
