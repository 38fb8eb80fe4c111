//! The store's in-memory state: every index the node queries and every fact the apply rules read,
//! derived from the `log` and `refused` trees and rebuilt from them at open (`repair.rs`).
//!
//! Compact on purpose (a node holds up to a million records): each stored record has one slot in a
//! slab of fixed-size [`Meta`] (no per-record `String` or `Vec`), people, scopes and deal ids are
//! interned to `u32` (reference-counted, so a key no record uses any more is freed), and the
//! ordered indexes are `BTreeSet`s of small tuples ending in `(created_at, slot)`. Ties on
//! `created_at` are in slot order inside a set; queries that promise `(created_at, id)` order sort
//! their (nearly sorted) output.
//!
//! Bounded by the store's quotas: one slot per stored record (`max_total_records`), one marker per
//! refused id (each made by a stored record: a superseded or withdrawn revision, a revocation,
//! aged out by `prune`), and interned keys only while a record uses them.
//!
//! Only the writer changes it (after its sled transaction commits), under the store's `RwLock`.

use std::collections::BTreeSet;

use crate::FastMap as HashMap;
use std::hash::Hash;

use troc_protocol::{Body, CancelReason, Category, Header, Kind, ListingKey, RecordId, RecordType, Timestamp};

use super::Scope;
use super::keys::{self, Marker};

/// "No slot", "no scope".
pub(super) const NONE: u32 = u32::MAX;
/// The expiry of a record kept for good.
pub(super) const NO_EXPIRY: Timestamp = u64::MAX;

/// Link tags: a proposal, agreement or extension, once per party (key: a person).
pub(super) const LINK_PARTY: u8 = 1;
/// Records naming a deal (an agreement, or the proposal a cancellation declines): deal steps,
/// cancellations, extensions, reviews, review commitments (key: an interned deal id); and
/// revocations, which name the record they revoke (key: the interned id of that record), so the
/// deal rules find the revocations of a deal record (`docs/protocol.md` section 14, revocations).
pub(super) const LINK_REFERENCE: u8 = 2;
/// Reviews, review commitments and vouches about a person (key: a person).
pub(super) const LINK_SUBJECT: u8 = 3;

/// What the deal rules (`apply.rs`) need to know about a deal record, beyond its [`Meta`]: kept in
/// memory for proposals, agreements and every record that names one, so that checking a deal step
/// or a review never reads sled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DealFact {
    Proposal {
        counterparty: [u8; 32],
    },
    Agreement {
        counterparty: [u8; 32],
        kind: Kind,
        start: Timestamp,
        due: Option<Timestamp>,
    },
    /// Handover, return, completion.
    Step,
    Acknowledgement {
        subject: RecordId,
    },
    Cancellation {
        reason: CancelReason,
    },
    Extension {
        counterparty: [u8; 32],
        new_due: Timestamp,
    },
    Review {
        subject: [u8; 32],
    },
    Commitment {
        subject: [u8; 32],
        review: RecordId,
    },
    /// A revocation; the "deal" it names is the record it revokes (whatever its type).
    Revocation,
}

/// The deal a record names (`None` for proposals and agreements, which are deals themselves) and
/// its [`DealFact`]; `None` for records that have nothing to do with deals.
pub(super) fn deal_fact(body: &Body) -> Option<(Option<RecordId>, DealFact)> {
    Some(match body {
        Body::Proposal(p) => (None, DealFact::Proposal { counterparty: *p.counterparty.as_bytes() }),
        Body::Agreement(a) => (
            None,
            DealFact::Agreement { counterparty: *a.counterparty.as_bytes(), kind: a.kind, start: a.start, due: a.due },
        ),
        Body::Handover(s) => (Some(s.agreement), DealFact::Step),
        Body::Return(s) => (Some(s.agreement), DealFact::Step),
        Body::Completion(s) => (Some(s.agreement), DealFact::Step),
        Body::Acknowledgement(a) => (Some(a.agreement), DealFact::Acknowledgement { subject: a.subject }),
        Body::Cancellation(c) => (Some(c.deal), DealFact::Cancellation { reason: c.reason }),
        Body::Extension(e) => {
            (Some(e.agreement), DealFact::Extension { counterparty: *e.counterparty.as_bytes(), new_due: e.new_due })
        }
        Body::Review(r) => (Some(r.agreement), DealFact::Review { subject: *r.subject.as_bytes() }),
        Body::ReviewCommitment(c) => {
            (Some(c.agreement), DealFact::Commitment { subject: *c.subject.as_bytes(), review: c.review })
        }
        Body::Revocation(r) => (Some(r.target), DealFact::Revocation),
        _ => return None,
    })
}

/// What a record's type adds to its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extra {
    None,
    Listing {
        key: ListingKey,
        revision: u32,
        kind: Kind,
        category: Category,
    },
    Withdrawal {
        key: ListingKey,
    },
    /// Up to three `(tag, interned key)` links (see `LINK_*`).
    Links {
        n: u8,
        links: [(u8, u32); 3],
    },
}

/// What the store keeps in memory about one stored record (about 100 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Meta {
    pub id: RecordId,
    /// Its key in the `log` tree.
    pub seq: u64,
    pub created_at: Timestamp,
    /// [`NO_EXPIRY`] for records kept for good.
    pub expiry: Timestamp,
    /// Interned author.
    pub author: u32,
    /// Interned sync scope, [`NONE`] for private records.
    pub scope: u32,
    /// Size of the signed bytes.
    pub len: u32,
    pub rtype: RecordType,
    pub extra: Extra,
}

/// Interned keys with reference counts: a key's number is reused once nothing refers to it.
#[derive(Debug, Clone)]
struct Interner<K> {
    ids: HashMap<K, u32>,
    keys: Vec<Option<K>>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner { ids: HashMap::default(), keys: Vec::new(), refs: Vec::new(), free: Vec::new() }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    fn get(&self, k: &K) -> Option<u32> {
        self.ids.get(k).copied()
    }

    /// The key's number, counting one more reference to it.
    fn acquire(&mut self, k: &K) -> u32 {
        if let Some(&i) = self.ids.get(k) {
            self.refs[i as usize] += 1;
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.keys[i as usize] = Some(k.clone());
                self.refs[i as usize] = 1;
                i
            }
            None => {
                self.keys.push(Some(k.clone()));
                self.refs.push(1);
                (self.keys.len() - 1) as u32
            }
        };
        self.ids.insert(k.clone(), i);
        i
    }

    /// One reference fewer; returns true when that was the last (the number is then free).
    fn release(&mut self, i: u32) -> bool {
        let Some(r) = self.refs.get_mut(i as usize) else { return false };
        *r = r.saturating_sub(1);
        if *r > 0 {
            return false;
        }
        if let Some(k) = self.keys[i as usize].take() {
            self.ids.remove(&k);
        }
        self.free.push(i);
        true
    }

    fn key(&self, i: u32) -> Option<&K> {
        self.keys.get(i as usize).and_then(Option::as_ref)
    }

    fn live(&self) -> impl Iterator<Item = &K> {
        self.keys.iter().flatten()
    }
}

/// Per-person state, next to the person's interned key.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Person {
    /// Records authored.
    pub records: u32,
    /// Listing addresses with a current revision.
    pub live: u32,
    /// Slot of the current profile, [`NONE`] without one.
    pub profile: u32,
}

/// The in-memory state. See the module documentation.
#[derive(Debug, Clone, Default)]
pub(super) struct Mem {
    slots: Vec<Option<Meta>>,
    free_slots: Vec<u32>,
    by_id: HashMap<RecordId, u32>,
    persons: Interner<[u8; 32]>,
    person_state: Vec<Person>,
    scopes: Interner<Scope>,
    deals: Interner<RecordId>,
    /// `(author, key) → slot` of the current revision.
    listing_heads: HashMap<(u32, ListingKey), u32>,
    /// `(author, key) → slot` of the withdrawal.
    withdrawal_heads: HashMap<(u32, ListingKey), u32>,
    /// `(author, created_at, slot)`, every record.
    by_author: BTreeSet<(u32, Timestamp, u32)>,
    /// `(scope, created_at, slot)`, public records.
    by_scope: BTreeSet<(u32, Timestamp, u32)>,
    /// `(kind ‖ category, created_at, slot)`, listings.
    by_kind: BTreeSet<(u16, Timestamp, u32)>,
    /// `(expiry, slot)`, records that expire.
    by_expiry: BTreeSet<(Timestamp, u32)>,
    /// `(tag, key, created_at, slot)`, see `LINK_*`.
    links: BTreeSet<(u8, u32, Timestamp, u32)>,
    markers: HashMap<RecordId, Marker>,
    /// The deal facts of deal records (see [`DealFact`]).
    deal_facts: HashMap<RecordId, DealFact>,
    /// `(expiry, id)` of the markers that expire.
    marker_expiry: BTreeSet<(Timestamp, RecordId)>,
    total: u64,
    bytes: u64,
    live: u64,
    by_type: [u64; 16],
    /// The `log` key the next stored record gets.
    pub next_seq: u64,
}

/// `kind ‖ category` as one sort key.
pub(super) fn kind_key(kind: Kind, category: Category) -> u16 {
    (u16::from(kind.code()) << 8) | u16::from(category.code())
}

impl Mem {
    // -----------------------------------------------------------------------------------------
    // Lookups

    pub fn slot_of(&self, id: &RecordId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn meta(&self, slot: u32) -> Option<&Meta> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn get(&self, id: &RecordId) -> Option<&Meta> {
        self.slot_of(id).and_then(|s| self.meta(s))
    }

    /// Every stored id, in no order.
    pub fn ids(&self) -> impl Iterator<Item = RecordId> + '_ {
        self.by_id.keys().copied()
    }

    pub fn contains(&self, id: &RecordId) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn person_of(&self, key: &[u8; 32]) -> Option<u32> {
        self.persons.get(key)
    }

    pub fn person_key(&self, p: u32) -> Option<&[u8; 32]> {
        self.persons.key(p)
    }

    pub fn person(&self, key: &[u8; 32]) -> Person {
        self.person_of(key)
            .and_then(|p| self.person_state.get(p as usize).copied())
            .unwrap_or(Person { profile: NONE, ..Person::default() })
    }

    pub fn scope_of(&self, scope: &Scope) -> Option<u32> {
        self.scopes.get(scope)
    }

    /// Every scope with at least one record.
    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.live()
    }

    pub fn deal_of(&self, id: &RecordId) -> Option<u32> {
        self.deals.get(id)
    }

    /// The deal id an interned deal number stands for.
    pub fn deal_key(&self, k: u32) -> Option<RecordId> {
        self.deals.key(k).copied()
    }

    /// The current revision of a listing address.
    pub fn listing_head(&self, author: &[u8; 32], key: &ListingKey) -> Option<&Meta> {
        let p = self.person_of(author)?;
        self.listing_heads.get(&(p, *key)).and_then(|&s| self.meta(s))
    }

    /// The withdrawal of a listing address.
    pub fn withdrawal_head(&self, author: &[u8; 32], key: &ListingKey) -> Option<&Meta> {
        let p = self.person_of(author)?;
        self.withdrawal_heads.get(&(p, *key)).and_then(|&s| self.meta(s))
    }

    /// The author's current profile.
    pub fn profile_head(&self, author: &[u8; 32]) -> Option<&Meta> {
        let s = self.person(author).profile;
        if s == NONE { None } else { self.meta(s) }
    }

    pub fn marker(&self, id: &RecordId) -> Option<Marker> {
        self.markers.get(id).copied()
    }

    /// The deal fact of a stored deal record.
    pub fn deal_fact(&self, id: &RecordId) -> Option<DealFact> {
        self.deal_facts.get(id).copied()
    }

    pub fn markers(&self) -> usize {
        self.markers.len()
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn live(&self) -> u64 {
        self.live
    }

    pub fn count_of(&self, t: RecordType) -> u64 {
        self.by_type.get(t.code() as usize).copied().unwrap_or(0)
    }

    pub fn by_author(&self, p: u32) -> impl DoubleEndedIterator<Item = &(u32, Timestamp, u32)> {
        self.by_author.range((p, 0, 0)..=(p, u64::MAX, u32::MAX))
    }

    pub fn by_scope(&self, s: u32) -> impl DoubleEndedIterator<Item = &(u32, Timestamp, u32)> {
        self.by_scope.range((s, 0, 0)..=(s, u64::MAX, u32::MAX))
    }

    /// Listings of a kind (and a category, if given).
    pub fn by_kind(&self, kind: Option<Kind>, category: Option<Category>) -> Vec<(Timestamp, u32)> {
        let (lo, hi) = match (kind, category) {
            (None, _) => (0, u16::MAX),
            (Some(k), None) => (u16::from(k.code()) << 8, (u16::from(k.code()) << 8) | 0x00ff),
            (Some(k), Some(c)) => (kind_key(k, c), kind_key(k, c)),
        };
        self.by_kind.range((lo, 0, 0)..=(hi, u64::MAX, u32::MAX)).map(|&(_, t, s)| (t, s)).collect()
    }

    pub fn links(&self, tag: u8, key: u32) -> impl DoubleEndedIterator<Item = &(u8, u32, Timestamp, u32)> {
        self.links.range((tag, key, 0, 0)..=(tag, key, u64::MAX, u32::MAX))
    }

    /// Slots of the records expired at `now` (expiry ≤ now), soonest first.
    pub fn expired(&self, now: Timestamp) -> impl Iterator<Item = u32> + '_ {
        self.by_expiry.range(..=(now, u32::MAX)).map(|&(_, s)| s)
    }

    /// Markers expired at `now`, soonest first.
    pub fn expired_markers(&self, now: Timestamp) -> impl Iterator<Item = RecordId> + '_ {
        self.marker_expiry.range(..=(now, RecordId([0xff; 32]))).map(|&(_, id)| id)
    }

    // -----------------------------------------------------------------------------------------
    // Changes

    /// Adds a stored record (at `log` key `seq`) with its index entries and counts; a listing
    /// becomes its address's current revision, a withdrawal its address's withdrawal, a profile its
    /// author's current one (the apply rules decided that it should). Returns its slot.
    pub fn insert(&mut self, seq: u64, id: RecordId, header: &Header, body: &Body, len: usize) -> u32 {
        let author = self.acquire_person(header.author.as_bytes());
        let scope = match keys::scope_of(header, body) {
            Some(s) => self.scopes.acquire(&s),
            None => NONE,
        };
        let expiry = keys::expiry_of(header, body).unwrap_or(NO_EXPIRY);
        let mut links = [(0u8, 0u32); 3];
        let mut n = 0u8;
        let mut link = |mem: &mut Mem, tag: u8, key: &[u8; 32]| {
            let k = if tag == LINK_REFERENCE { mem.deals.acquire(&RecordId(*key)) } else { mem.acquire_person(key) };
            links[n as usize] = (tag, k);
            n += 1;
        };
        let extra = match body {
            Body::Listing(l) => Extra::Listing { key: l.key, revision: l.revision, kind: l.kind, category: l.category },
            Body::Withdrawal(w) => Extra::Withdrawal { key: w.listing_key },
            Body::Proposal(p) => {
                link(self, LINK_PARTY, header.author.as_bytes());
                link(self, LINK_PARTY, p.counterparty.as_bytes());
                Extra::Links { n, links }
            }
            Body::Agreement(a) => {
                link(self, LINK_PARTY, header.author.as_bytes());
                link(self, LINK_PARTY, a.counterparty.as_bytes());
                Extra::Links { n, links }
            }
            Body::Extension(e) => {
                link(self, LINK_PARTY, header.author.as_bytes());
                link(self, LINK_PARTY, e.counterparty.as_bytes());
                link(self, LINK_REFERENCE, e.agreement.as_bytes());
                Extra::Links { n, links }
            }
            Body::Handover(s) => {
                link(self, LINK_REFERENCE, s.agreement.as_bytes());
                Extra::Links { n, links }
            }
            Body::Return(s) => {
                link(self, LINK_REFERENCE, s.agreement.as_bytes());
                Extra::Links { n, links }
            }
            Body::Completion(s) => {
                link(self, LINK_REFERENCE, s.agreement.as_bytes());
                Extra::Links { n, links }
            }
            Body::Acknowledgement(a) => {
                link(self, LINK_REFERENCE, a.agreement.as_bytes());
                Extra::Links { n, links }
            }
            Body::Cancellation(c) => {
                link(self, LINK_REFERENCE, c.deal.as_bytes());
                Extra::Links { n, links }
            }
            Body::Review(r) => {
                link(self, LINK_REFERENCE, r.agreement.as_bytes());
                link(self, LINK_SUBJECT, r.subject.as_bytes());
                Extra::Links { n, links }
            }
            Body::ReviewCommitment(r) => {
                link(self, LINK_REFERENCE, r.agreement.as_bytes());
                link(self, LINK_SUBJECT, r.subject.as_bytes());
                Extra::Links { n, links }
            }
            Body::Vouch(v) => {
                link(self, LINK_SUBJECT, v.subject.as_bytes());
                Extra::Links { n, links }
            }
            Body::Revocation(r) => {
                link(self, LINK_REFERENCE, r.target.as_bytes());
                Extra::Links { n, links }
            }
            Body::Profile(_) => Extra::None,
        };
        let meta = Meta {
            id,
            seq,
            created_at: header.created_at,
            expiry,
            author,
            scope,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            rtype: header.record_type,
            extra,
        };
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let at = meta.created_at;
        self.by_author.insert((author, at, slot));
        if scope != NONE {
            self.by_scope.insert((scope, at, slot));
        }
        if expiry != NO_EXPIRY {
            self.by_expiry.insert((expiry, slot));
        }
        match meta.extra {
            Extra::Listing { key, kind, category, .. } => {
                self.by_kind.insert((kind_key(kind, category), at, slot));
                if self.listing_heads.insert((author, key), slot).is_none() {
                    self.person_state[author as usize].live += 1;
                    self.live += 1;
                }
            }
            Extra::Withdrawal { key } => {
                self.withdrawal_heads.insert((author, key), slot);
            }
            Extra::Links { n, links } => {
                for &(tag, k) in &links[..n as usize] {
                    self.links.insert((tag, k, at, slot));
                }
            }
            Extra::None => {
                if meta.rtype == RecordType::Profile {
                    self.person_state[author as usize].profile = slot;
                }
            }
        }
        self.person_state[author as usize].records += 1;
        self.total += 1;
        self.bytes += u64::from(meta.len);
        if let Some(c) = self.by_type.get_mut(meta.rtype.code() as usize) {
            *c += 1;
        }
        if let Some((_, fact)) = deal_fact(body) {
            self.deal_facts.insert(id, fact);
        }
        self.by_id.insert(id, slot);
        self.slots[slot as usize] = Some(meta);
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        slot
    }

    /// Removes a stored record, its index entries and counts; if it was the head of its address
    /// (current revision, withdrawal, current profile), the address loses its head.
    pub fn remove(&mut self, id: &RecordId) -> Option<Meta> {
        let slot = self.by_id.remove(id)?;
        let meta = self.slots.get_mut(slot as usize)?.take()?;
        self.free_slots.push(slot);
        self.deal_facts.remove(id);
        let (author, at) = (meta.author, meta.created_at);
        self.by_author.remove(&(author, at, slot));
        if meta.scope != NONE {
            self.by_scope.remove(&(meta.scope, at, slot));
            self.scopes.release(meta.scope);
        }
        if meta.expiry != NO_EXPIRY {
            self.by_expiry.remove(&(meta.expiry, slot));
        }
        match meta.extra {
            Extra::Listing { key, kind, category, .. } => {
                self.by_kind.remove(&(kind_key(kind, category), at, slot));
                if self.listing_heads.get(&(author, key)) == Some(&slot) {
                    self.listing_heads.remove(&(author, key));
                    if let Some(p) = self.person_state.get_mut(author as usize) {
                        p.live = p.live.saturating_sub(1);
                    }
                    self.live = self.live.saturating_sub(1);
                }
            }
            Extra::Withdrawal { key } => {
                if self.withdrawal_heads.get(&(author, key)) == Some(&slot) {
                    self.withdrawal_heads.remove(&(author, key));
                }
            }
            Extra::Links { n, links } => {
                for &(tag, k) in &links[..n as usize] {
                    self.links.remove(&(tag, k, at, slot));
                    if tag == LINK_REFERENCE {
                        self.deals.release(k);
                    } else {
                        self.release_person(k);
                    }
                }
            }
            Extra::None => {
                if let Some(p) = self.person_state.get_mut(author as usize)
                    && p.profile == slot
                {
                    p.profile = NONE;
                }
            }
        }
        if let Some(p) = self.person_state.get_mut(author as usize) {
            p.records = p.records.saturating_sub(1);
        }
        self.release_person(author);
        self.total = self.total.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(u64::from(meta.len));
        if let Some(c) = self.by_type.get_mut(meta.rtype.code() as usize) {
            *c = c.saturating_sub(1);
        }
        Some(meta)
    }

    /// Sets (or replaces) the marker of `id`.
    pub fn set_marker(&mut self, id: RecordId, m: Marker) {
        if let Some(old) = self.markers.insert(id, m)
            && old.expiry != keys::NEVER
        {
            self.marker_expiry.remove(&(old.expiry, id));
        }
        if m.expiry != keys::NEVER {
            self.marker_expiry.insert((m.expiry, id));
        }
    }

    pub fn unmark(&mut self, id: &RecordId) {
        if let Some(old) = self.markers.remove(id)
            && old.expiry != keys::NEVER
        {
            self.marker_expiry.remove(&(old.expiry, *id));
        }
    }

    fn acquire_person(&mut self, key: &[u8; 32]) -> u32 {
        let p = self.persons.acquire(key);
        let i = p as usize;
        if i >= self.person_state.len() {
            self.person_state.resize(i + 1, Person { profile: NONE, ..Person::default() });
        }
        p
    }

    fn release_person(&mut self, p: u32) {
        if self.persons.release(p)
            && let Some(s) = self.person_state.get_mut(p as usize)
        {
            *s = Person { profile: NONE, ..Person::default() };
        }
    }

    /// Approximate heap size in bytes (for the memory figures).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let set = |n: usize, entry: usize| n * (entry + 8);
        let map = |cap: usize, entry: usize| cap * (entry + 1);
        self.slots.capacity() * size_of::<Option<Meta>>()
            + map(self.by_id.capacity(), 36)
            + map(self.listing_heads.capacity(), 24)
            + map(self.withdrawal_heads.capacity(), 24)
            + set(self.by_author.len(), 16)
            + set(self.by_scope.len(), 16)
            + set(self.by_kind.len(), 16)
            + set(self.by_expiry.len(), 16)
            + set(self.links.len(), 24)
            + map(self.markers.capacity(), 72)
            + map(self.deal_facts.capacity(), 110)
            + set(self.marker_expiry.len(), 40)
            + self.persons.keys.capacity() * (33 + 4 + size_of::<Person>())
            + map(self.persons.ids.capacity(), 36)
    }

    /// A canonical description of the state (independent of slot numbers and of the order things
    /// were inserted in), sorted, to compare a rebuilt state with the original
    /// ([`super::Store::check_indexes`]). One line per record and per index entry: as large as the
    /// state itself, for on-demand checks only.
    pub fn canonical(&self) -> Vec<String> {
        // Each person's hex once, not once per line (the check runs over every index entry).
        let hexes: Vec<String> = self.persons.keys.iter().map(|k| k.map(hex::encode).unwrap_or_default()).collect();
        let person = |p: u32| hexes.get(p as usize).cloned().unwrap_or_default();
        let mut out: Vec<String> = Vec::new();
        for m in self.slots.iter().flatten() {
            let scope = self.scopes.key(m.scope).cloned();
            let extra = match m.extra {
                Extra::Links { n, links } => links[..n as usize]
                    .iter()
                    .map(|&(tag, k)| match tag {
                        LINK_REFERENCE => {
                            format!("ref {}", self.deals.key(k).map(|d| d.to_string()).unwrap_or_default())
                        }
                        _ => format!("{tag} {}", person(k)),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                e => format!("{e:?}"),
            };
            out.push(format!(
                "record {} seq {} {:?} at {} exp {} by {} in {scope:?} len {} {extra}",
                m.id,
                m.seq,
                m.rtype,
                m.created_at,
                m.expiry,
                person(m.author),
                m.len
            ));
        }
        for (&(p, key), &s) in &self.listing_heads {
            out.push(format!("listing head {} {key:?} {:?}", person(p), self.meta(s).map(|m| m.id)));
        }
        for (&(p, key), &s) in &self.withdrawal_heads {
            out.push(format!("withdrawal head {} {key:?} {:?}", person(p), self.meta(s).map(|m| m.id)));
        }
        for (i, st) in self.person_state.iter().enumerate() {
            if let Some(k) = self.persons.key(i as u32) {
                let profile = self.meta(st.profile).map(|m| m.id);
                out.push(format!(
                    "person {} records {} live {} profile {profile:?}",
                    hex::encode(k),
                    st.records,
                    st.live
                ));
            }
        }
        for (id, m) in &self.markers {
            out.push(format!("marker {id} {} {}", m.expiry, hex::encode(m.author)));
        }
        // The ordered indexes, entry by entry, slots named by record id.
        let id = |s: u32| self.meta(s).map(|m| m.id.to_string()).unwrap_or_else(|| format!("empty slot {s}"));
        for &(p, at, s) in &self.by_author {
            out.push(format!("by author {} {at} {}", person(p), id(s)));
        }
        for &(sc, at, s) in &self.by_scope {
            out.push(format!("by scope {:?} {at} {}", self.scopes.key(sc), id(s)));
        }
        for &(k, at, s) in &self.by_kind {
            out.push(format!("by kind {k} {at} {}", id(s)));
        }
        for &(e, s) in &self.by_expiry {
            out.push(format!("by expiry {e} {}", id(s)));
        }
        for &(tag, k, at, s) in &self.links {
            let key = match tag {
                LINK_REFERENCE => self.deals.key(k).map(|d| d.to_string()).unwrap_or_default(),
                _ => person(k),
            };
            out.push(format!("link {tag} {key} {at} {}", id(s)));
        }
        for (rid, fact) in &self.deal_facts {
            out.push(format!("deal fact {rid} {fact:?}"));
        }
        for &(e, rid) in &self.marker_expiry {
            out.push(format!("marker expiry {e} {rid}"));
        }
        // Interned keys with their reference counts (a leak or an early free shows here).
        for (i, k) in self.persons.keys.iter().enumerate() {
            if let Some(k) = k {
                out.push(format!("person key {} refs {}", hex::encode(k), self.persons.refs[i]));
            }
        }
        for (i, k) in self.scopes.keys.iter().enumerate() {
            if let Some(k) = k {
                out.push(format!("scope key {k:?} refs {}", self.scopes.refs[i]));
            }
        }
        for (i, k) in self.deals.keys.iter().enumerate() {
            if let Some(k) = k {
                out.push(format!("deal key {k} refs {}", self.deals.refs[i]));
            }
        }
        out.push(format!("counts {} {} {} {:?}", self.total, self.bytes, self.live, self.by_type));
        out.push(format!(
            "sizes {} {} {} {} {} {} {}",
            self.by_author.len(),
            self.by_scope.len(),
            self.by_kind.len(),
            self.by_expiry.len(),
            self.links.len(),
            self.marker_expiry.len(),
            self.by_id.len()
        ));
        out.sort();
        out
    }
}
