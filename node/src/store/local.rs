//! The node's own private state about deals, in one sled tree `local` beside the records: the
//! outbox of direct deal messages waiting for an offline peer, extension requests waiting for the
//! person's answer, reviews kept hidden behind their commitment until they are revealed, the people
//! the person blocked, and which reminders were already given.
//!
//! None of it is a record the indexes derive from, so it is written here directly by the deal
//! service and the API (not through the writer thread), and no repair or rebuild touches it. Every
//! part is bounded (see [`OutboxLimits`] and the `MAX_*` constants).
//!
//! Keys start with one byte naming the part:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `o` | `peer32 ‖ seq8` | an [`OutboxEntry`]: `kind1 ‖ created8 ‖ expires8 ‖ attempts4 ‖ next_try8 ‖ bytes` |
//! | `x` | `id32` | an extension request: the partially signed extension |
//! | `h` | `id32` | a hidden review: its signed bytes |
//! | `b` | `person32` | a blocked person (empty value) |
//! | `r` | `id32 ‖ kind1` | a reminder given (empty value) |

use troc_protocol::{PublicKey, RecordId, Timestamp};

use super::keys::u64_at;
use super::{Store, StoreError};

const TREE_LOCAL: &str = "local";
const P_OUTBOX: u8 = b'o';
const P_EXTENSION: u8 = b'x';
const P_HIDDEN: u8 = b'h';
const P_BLOCKED: u8 = b'b';
const P_REMINDER: u8 = b'r';

/// Extension requests waiting for an answer, at most.
pub const MAX_EXTENSION_REQUESTS: usize = 256;
/// Hidden reviews waiting to be revealed, at most.
pub const MAX_HIDDEN_REVIEWS: usize = 1024;
/// Blocked people, at most.
pub const MAX_BLOCKED: usize = 10_000;

/// What an outbox entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A complete signed record for the peer.
    Record,
    /// A partially signed record (agreement, extension) for the peer to countersign.
    Cosign,
}

impl OutboxKind {
    fn code(self) -> u8 {
        match self {
            OutboxKind::Record => 1,
            OutboxKind::Cosign => 2,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(OutboxKind::Record),
            2 => Some(OutboxKind::Cosign),
            _ => None,
        }
    }
}

/// A direct message waiting to be delivered to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub peer: PublicKey,
    /// Its place in the outbox (delivery order per peer).
    pub seq: u64,
    pub kind: OutboxKind,
    pub bytes: Vec<u8>,
    pub created_at: Timestamp,
    /// Dropped, undelivered, at this time.
    pub expires_at: Timestamp,
    pub attempts: u32,
    /// Not retried before this time (except when the peer connects).
    pub next_try: Timestamp,
}

/// Bounds on the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    pub per_peer: usize,
    pub total: usize,
    /// How long a message is kept undelivered.
    pub ttl_secs: u64,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits { per_peer: 256, total: 4096, ttl_secs: 30 * 24 * 3600 }
    }
}

fn outbox_key(peer: &PublicKey, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(41);
    k.push(P_OUTBOX);
    k.extend_from_slice(peer.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn id_key(prefix: u8, id: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(prefix);
    k.extend_from_slice(id);
    k
}

impl OutboxEntry {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(29 + self.bytes.len());
        v.push(self.kind.code());
        v.extend_from_slice(&self.created_at.to_be_bytes());
        v.extend_from_slice(&self.expires_at.to_be_bytes());
        v.extend_from_slice(&self.attempts.to_be_bytes());
        v.extend_from_slice(&self.next_try.to_be_bytes());
        v.extend_from_slice(&self.bytes);
        v
    }

    fn decode(k: &[u8], v: &[u8]) -> Option<Self> {
        if k.len() != 41 || v.len() < 29 {
            return None;
        }
        let key: [u8; 32] = k.get(1..33)?.try_into().ok()?;
        let peer = PublicKey::from_bytes(&key).ok()?;
        Some(OutboxEntry {
            peer,
            seq: u64_at(k, 33)?,
            kind: OutboxKind::from_code(v[0])?,
            created_at: u64_at(v, 1)?,
            expires_at: u64_at(v, 9)?,
            attempts: u32::from_be_bytes(v.get(17..21)?.try_into().ok()?),
            next_try: u64_at(v, 21)?,
            bytes: v[29..].to_vec(),
        })
    }
}

impl Store {
    fn local(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.inner.db.open_tree(TREE_LOCAL)?)
    }

    fn count_prefix(&self, prefix: &[u8]) -> Result<usize, StoreError> {
        Ok(self.local()?.scan_prefix(prefix).count())
    }

    // -----------------------------------------------------------------------------------------
    // Outbox

    /// Queues a message for `peer`. Refused ([`StoreError::OutboxFull`]) beyond the limits.
    pub fn outbox_push(
        &self,
        peer: &PublicKey,
        kind: OutboxKind,
        bytes: &[u8],
        now: Timestamp,
        limits: OutboxLimits,
    ) -> Result<OutboxEntry, StoreError> {
        let t = self.local()?;
        let mut peer_prefix = vec![P_OUTBOX];
        peer_prefix.extend_from_slice(peer.as_bytes());
        if t.scan_prefix(&peer_prefix).count() >= limits.per_peer || t.scan_prefix([P_OUTBOX]).count() >= limits.total {
            return Err(StoreError::OutboxFull);
        }
        let seq = self.inner.db.generate_id()?;
        let entry = OutboxEntry {
            peer: *peer,
            seq,
            kind,
            bytes: bytes.to_vec(),
            created_at: now,
            expires_at: now.saturating_add(limits.ttl_secs),
            attempts: 0,
            next_try: now,
        };
        t.insert(outbox_key(peer, seq), entry.encode())?;
        t.flush()?;
        Ok(entry)
    }

    /// Every queued message, oldest first per peer (entries that do not decode are dropped).
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let t = self.local()?;
        let mut out = Vec::new();
        for item in t.scan_prefix([P_OUTBOX]) {
            let (k, v) = item?;
            match OutboxEntry::decode(&k, &v) {
                Some(e) => out.push(e),
                None => {
                    t.remove(k)?;
                }
            }
        }
        Ok(out)
    }

    /// Records a failed attempt (the entry's `attempts` and `next_try` as given).
    pub fn outbox_update(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let t = self.local()?;
        let k = outbox_key(&entry.peer, entry.seq);
        if t.contains_key(&k)? {
            t.insert(k, entry.encode())?;
        }
        Ok(())
    }

    /// Removes a delivered (or expired) message.
    pub fn outbox_remove(&self, peer: &PublicKey, seq: u64) -> Result<(), StoreError> {
        self.local()?.remove(outbox_key(peer, seq))?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Extension requests, hidden reviews

    /// Keeps an extension request (its partially signed bytes) until the person answers.
    pub fn extension_request_put(&self, id: &RecordId, partial: &[u8]) -> Result<(), StoreError> {
        let t = self.local()?;
        if self.count_prefix(&[P_EXTENSION])? >= MAX_EXTENSION_REQUESTS {
            return Err(StoreError::LocalFull { what: "extension requests" });
        }
        t.insert(id_key(P_EXTENSION, id.as_bytes()), partial)?;
        Ok(())
    }

    /// The extension requests waiting for an answer: `(id, partially signed bytes)`.
    pub fn extension_requests(&self) -> Result<Vec<(RecordId, Vec<u8>)>, StoreError> {
        self.id_entries(P_EXTENSION)
    }

    pub fn extension_request_remove(&self, id: &RecordId) -> Result<bool, StoreError> {
        Ok(self.local()?.remove(id_key(P_EXTENSION, id.as_bytes()))?.is_some())
    }

    /// Keeps a review hidden (its signed bytes) until it is revealed.
    pub fn hidden_review_put(&self, id: &RecordId, bytes: &[u8]) -> Result<(), StoreError> {
        if self.count_prefix(&[P_HIDDEN])? >= MAX_HIDDEN_REVIEWS {
            return Err(StoreError::LocalFull { what: "hidden reviews" });
        }
        let t = self.local()?;
        t.insert(id_key(P_HIDDEN, id.as_bytes()), bytes)?;
        t.flush()?;
        Ok(())
    }

    /// The hidden reviews: `(id, signed bytes)`.
    pub fn hidden_reviews(&self) -> Result<Vec<(RecordId, Vec<u8>)>, StoreError> {
        self.id_entries(P_HIDDEN)
    }

    pub fn hidden_review_remove(&self, id: &RecordId) -> Result<(), StoreError> {
        self.local()?.remove(id_key(P_HIDDEN, id.as_bytes()))?;
        Ok(())
    }

    fn id_entries(&self, prefix: u8) -> Result<Vec<(RecordId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.local()?.scan_prefix([prefix]) {
            let (k, v) = item?;
            if let Some(id) = k.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                out.push((RecordId(id), v.to_vec()));
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Blocking, reminders

    /// Blocks a person on this node. Returns false if they were blocked already.
    pub fn block(&self, person: &PublicKey) -> Result<bool, StoreError> {
        let t = self.local()?;
        let k = id_key(P_BLOCKED, person.as_bytes());
        if t.contains_key(&k)? {
            return Ok(false);
        }
        if self.count_prefix(&[P_BLOCKED])? >= MAX_BLOCKED {
            return Err(StoreError::LocalFull { what: "blocked people" });
        }
        t.insert(k, &[])?;
        t.flush()?;
        Ok(true)
    }

    /// Unblocks a person. Returns false if they were not blocked.
    pub fn unblock(&self, person: &PublicKey) -> Result<bool, StoreError> {
        let t = self.local()?;
        let removed = t.remove(id_key(P_BLOCKED, person.as_bytes()))?.is_some();
        t.flush()?;
        Ok(removed)
    }

    pub fn is_blocked(&self, person: &PublicKey) -> Result<bool, StoreError> {
        Ok(self.local()?.contains_key(id_key(P_BLOCKED, person.as_bytes()))?)
    }

    /// Every blocked person.
    pub fn blocked(&self) -> Result<Vec<PublicKey>, StoreError> {
        Ok(self.id_entries(P_BLOCKED)?.into_iter().filter_map(|(id, _)| PublicKey::from_bytes(&id.0).ok()).collect())
    }

    /// Marks a reminder (`kind`) about `deal` as given; returns false if it already was.
    pub fn reminder_once(&self, deal: &RecordId, kind: u8) -> Result<bool, StoreError> {
        let mut k = id_key(P_REMINDER, deal.as_bytes());
        k.push(kind);
        let t = self.local()?;
        Ok(t.compare_and_swap(k, None as Option<&[u8]>, Some(&[] as &[u8]))?.is_ok())
    }
}
