//! Pruning: removes what has expired, so the store (and every sync set) only holds what is still
//! worth keeping.
//!
//! The in-memory expiry orders (records and refused-id markers) say what is due, so a prune touches
//! only what it removes: listings past `valid_until`, vouches past `expires_at`, withdrawals past
//! their retention (`created_at` + the longest listing lifetime + one day: by then every revision
//! they refuse has expired), and refused-id markers past theirs. Removals go through the same plan →
//! transaction → memory steps as `apply`.

use troc_protocol::{RecordId, RecordType, Timestamp};

use super::apply::{Plan, Removed};
use super::{PruneReport, Store, StoreError};

/// Records and markers removed per prune transaction.
const PRUNE_CHUNK: usize = 4096;

impl Store {
    /// Removes the listings and vouches expired at `now` (an expired current revision leaves its
    /// address without one), the withdrawals past their retention, and the refused-id markers past
    /// their expiry.
    pub fn prune(&self, now: Timestamp) -> Result<PruneReport, StoreError> {
        let _w = self.writer();
        let mut report = PruneReport::default();
        let (records, markers): (Vec<RecordId>, Vec<RecordId>) = {
            let mem = self.mem();
            (mem.expired(now).filter_map(|s| mem.meta(s).map(|m| m.id)).collect(), mem.expired_markers(now).collect())
        };
        if records.is_empty() && markers.is_empty() {
            return Ok(report);
        }
        self.note_write()?;
        for chunk in records.chunks(PRUNE_CHUNK) {
            let (ops, next_seq) = {
                let mem = self.mem();
                let mut plan = Plan::new(&mem);
                for id in chunk {
                    match plan.remove(id) {
                        Removed::Record(RecordType::Listing) => report.listings += 1,
                        Removed::Record(RecordType::Vouch) => report.vouches += 1,
                        Removed::Record(RecordType::Withdrawal) => report.withdrawals += 1,
                        Removed::Record(_) | Removed::NotStored => {}
                    }
                }
                (plan.ops, plan.next_seq)
            };
            self.commit(&ops, |_| None)?;
            self.absorb(&ops, next_seq, &mut []);
        }
        for chunk in markers.chunks(PRUNE_CHUNK) {
            let (ops, next_seq) = {
                let mem = self.mem();
                let mut plan = Plan::new(&mem);
                for id in chunk {
                    plan.unmark(id);
                    report.markers += 1;
                }
                (plan.ops, plan.next_seq)
            };
            self.commit(&ops, |_| None)?;
            self.absorb(&ops, next_seq, &mut []);
        }
        Ok(report)
    }
}
