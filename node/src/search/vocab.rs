//! The search index's vocabulary: every indexed word once, its posting list, an exact lookup and a
//! word order for prefix queries, laid out to cost little per word.
//!
//! Why this layout: at 100,000 listings the index holds ~200,000 distinct words, most of them used by
//! one listing (a name, a model number). A word used to cost a `BTreeMap` entry, a `HashMap` entry, a
//! shared `Arc<str>` and two lists of its own (~160 bytes); here it costs its bytes in one shared
//! string, a span, a hash-table slot, a term number in the ordered list and one list (~60 bytes):
//!
//! - `text` holds every word's bytes back to back; `spans[t]` says where term `t`'s are.
//! - `table` (hashbrown's `HashTable`) holds term numbers only and hashes the words where they lie
//!   in `text`: no key is stored twice. The hash is foldhash with a random seed per vocabulary
//!   (words come from peers, so they must not be able to aim at one bucket); it costs a fraction of
//!   SipHash on short words, and every word of every listing ingested is hashed once.
//! - `postings[t]` is one list of `slot << 8 | tf` (a slot below 2^24 and the word's weighted
//!   frequency, both what BM25 needs), in increasing slot order.
//! - Prefix queries need the words in order: `sorted` is the term numbers in word order, and the
//!   words added since the last merge wait in `recent` (at most [`MAX_RECENT`], searched linearly),
//!   merged into `sorted` when it is full: a prefix lookup is a binary search plus a short scan, and
//!   keeping the order costs O(words / MAX_RECENT) per new word instead of a tree node each.
//!
//! Words are never removed one by one: [`Vocab::compact`] rebuilds everything without the dead
//! slots and the words no live slot uses, when the index compacts.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::ops::Range;

use hashbrown::HashTable;

/// Slots must fit in the 24 bits a posting keeps for them.
pub(super) const MAX_SLOTS: usize = 1 << 24;
/// Words added since the last merge into `sorted`, at most.
const MAX_RECENT: usize = 2048;

/// A posting: a slot and the word's weighted frequency there.
pub(super) fn posting(slot: u32, tf: u8) -> u32 {
    debug_assert!((slot as usize) < MAX_SLOTS);
    slot << 8 | tf as u32
}

pub(super) fn slot_of(p: u32) -> u32 {
    p >> 8
}

pub(super) fn tf_of(p: u32) -> u8 {
    (p & 0xFF) as u8
}

/// See the module documentation.
#[derive(Clone, Default)]
pub(super) struct Vocab {
    text: String,
    spans: Vec<(u32, u32)>,
    table: HashTable<u32>,
    hasher: RandomState,
    postings: Vec<Vec<u32>>,
    sorted: Vec<u32>,
    recent: Vec<u32>,
}

impl Vocab {
    /// Distinct words.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    fn word(&self, t: u32) -> &str {
        word_in(&self.text, &self.spans, t)
    }

    /// The term number of a word.
    pub fn get(&self, word: &str) -> Option<u32> {
        self.find(self.hasher.hash_one(word), word)
    }

    fn find(&self, hash: u64, word: &str) -> Option<u32> {
        self.table.find(hash, |&t| word_in(&self.text, &self.spans, t) == word).copied()
    }

    /// A term's postings, in increasing slot order.
    pub fn postings(&self, t: u32) -> &[u32] {
        &self.postings[t as usize]
    }

    /// Appends a posting for `word` (slots are added in increasing order, so lists stay sorted).
    pub fn add(&mut self, word: &str, slot: u32, tf: u8) {
        let p = posting(slot, tf);
        let hash = self.hasher.hash_one(word);
        if let Some(t) = self.find(hash, word) {
            self.postings[t as usize].push(p);
            return;
        }
        let t = self.spans.len() as u32;
        let start = self.text.len() as u32;
        self.text.push_str(word);
        self.spans.push((start, word.len() as u32));
        // Most words occur in one listing: a list of exactly one (`vec!` allocates no spare room),
        // grown only if a second comes.
        self.postings.push(vec![p]);
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table.insert_unique(hash, t, |&u| hasher.hash_one(word_in(text, spans, u)));
        self.recent.push(t);
        if self.recent.len() >= MAX_RECENT {
            self.merge_recent();
        }
    }

    /// The terms whose word starts with `prefix` (any order).
    pub fn with_prefix(&self, prefix: &str) -> Vec<u32> {
        let range = self.sorted_range(prefix);
        let mut out: Vec<u32> = self.sorted[range].to_vec();
        out.extend(self.recent.iter().copied().filter(|&t| self.word(t).starts_with(prefix)));
        out
    }

    fn sorted_range(&self, prefix: &str) -> Range<usize> {
        let start = self.sorted.partition_point(|&t| self.word(t) < prefix);
        let len = self.sorted[start..].partition_point(|&t| self.word(t).starts_with(prefix));
        start..start + len
    }

    fn merge_recent(&mut self) {
        let (text, spans) = (&self.text, &self.spans);
        let mut recent = std::mem::take(&mut self.recent);
        recent.sort_unstable_by(|&a, &b| word_in(text, spans, a).cmp(word_in(text, spans, b)));
        let old = std::mem::take(&mut self.sorted);
        let mut merged = Vec::with_capacity(old.len() + recent.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < recent.len() {
            if word_in(text, spans, old[i]) <= word_in(text, spans, recent[j]) {
                merged.push(old[i]);
                i += 1;
            } else {
                merged.push(recent[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&old[i..]);
        merged.extend_from_slice(&recent[j..]);
        self.sorted = merged;
        recent.clear();
        self.recent = recent;
    }

    /// Renumbers the slots of every posting through `map` (`u32::MAX`: the slot is dropped) and
    /// rebuilds the vocabulary without the words left with no posting.
    pub fn compact(&mut self, map: &[u32]) {
        let old = std::mem::take(self);
        self.hasher = old.hasher;
        for (t, mut list) in old.postings.into_iter().enumerate() {
            list.retain_mut(|p| {
                let m = map[slot_of(*p) as usize];
                if m == u32::MAX {
                    return false;
                }
                *p = posting(m, tf_of(*p));
                true
            });
            if list.is_empty() {
                continue;
            }
            list.shrink_to_fit();
            let word = word_in(&old.text, &old.spans, t as u32);
            let new = self.spans.len() as u32;
            let start = self.text.len() as u32;
            self.text.push_str(word);
            self.spans.push((start, word.len() as u32));
            self.postings.push(list);
            let hash = self.hasher.hash_one(word);
            let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
            self.table.insert_unique(hash, new, |&u| hasher.hash_one(word_in(text, spans, u)));
            self.recent.push(new);
        }
        self.merge_recent();
        self.text.shrink_to_fit();
        self.spans.shrink_to_fit();
        self.postings.shrink_to_fit();
        self.sorted.shrink_to_fit();
    }

    /// Gives back the spare capacity of every list.
    pub fn shrink_to_fit(&mut self) {
        self.postings.iter_mut().for_each(Vec::shrink_to_fit);
        self.postings.shrink_to_fit();
        self.text.shrink_to_fit();
        self.spans.shrink_to_fit();
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table.shrink_to_fit(|&u| hasher.hash_one(word_in(text, spans, u)));
    }

    /// An estimate of the bytes held (capacities; one control byte per table bucket).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.text.capacity()
            + self.spans.capacity() * size_of::<(u32, u32)>()
            + self.table.capacity() * (size_of::<u32>() + 1)
            + self.postings.capacity() * size_of::<Vec<u32>>()
            + self.postings.iter().map(|p| p.capacity() * 4).sum::<usize>()
            + (self.sorted.capacity() + self.recent.capacity()) * 4
    }
}

fn word_in<'a>(text: &'a str, spans: &[(u32, u32)], t: u32) -> &'a str {
    let (start, len) = spans[t as usize];
    &text[start as usize..(start + len) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefix_and_merge() {
        let mut v = Vocab::default();
        // Enough words to merge `recent` into `sorted` several times.
        for i in 0..(3 * MAX_RECENT as u32 + 17) {
            v.add(&format!("w{i:05}"), i, (i % 7) as u8 + 1);
        }
        v.add("drill", 1, 3);
        v.add("drills", 2, 1);
        v.add("drill", 3, 2);
        assert_eq!(v.len(), 3 * MAX_RECENT + 17 + 2);
        let drill = v.get("drill").expect("drill is indexed");
        assert_eq!(v.postings(drill), &[posting(1, 3), posting(3, 2)]);
        assert_eq!(v.get("dril"), None);
        let mut found: Vec<&str> = v.with_prefix("dril").into_iter().map(|t| v.word(t)).collect();
        found.sort();
        assert_eq!(found, ["drill", "drills"]);
        assert_eq!(v.with_prefix("w0000").len(), 10);
        assert_eq!(v.with_prefix("w").len(), 3 * MAX_RECENT + 17);
        assert!(v.with_prefix("x").is_empty());
        // `sorted` is in word order.
        assert!(v.sorted.windows(2).all(|w| v.word(w[0]) <= v.word(w[1])));
    }

    #[test]
    fn compact_renumbers_and_drops_unused_words() {
        let mut v = Vocab::default();
        v.add("alpha", 0, 1);
        v.add("beta", 1, 2);
        v.add("alpha", 2, 3);
        // Slot 1 dies, slot 2 becomes 1.
        v.compact(&[0, u32::MAX, 1]);
        assert_eq!(v.len(), 1);
        assert_eq!(v.get("beta"), None);
        let alpha = v.get("alpha").expect("alpha is kept");
        assert_eq!(v.postings(alpha), &[posting(0, 1), posting(1, 3)]);
        assert_eq!(v.with_prefix("al"), vec![alpha]);
        assert!(v.with_prefix("be").is_empty());
    }

    #[test]
    fn posting_packing() {
        let p = posting((MAX_SLOTS - 1) as u32, 255);
        assert_eq!(slot_of(p), (MAX_SLOTS - 1) as u32);
        assert_eq!(tf_of(p), 255);
    }
}
