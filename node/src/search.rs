//! The listing search index behind `troc search`, the API's search and saved searches (alerts).
//!
//! [`SearchIndex`] is an in-memory index of the live listings. The store holds one (`Store::search`):
//! it is rebuilt with the store's other indexes at open and kept up to date by the writer as listings
//! become current, are superseded, withdrawn, revoked or pruned ([`SearchIndex::upsert_document`],
//! [`SearchIndex::remove_id`]); the words of a listing ([`Document`]) are found on the ingest
//! pipeline's verification thread. It can also be built on its own ([`SearchIndex::build`]). It never
//! holds more listings than the store does (the store's quotas bound both). Queries take `&self` and
//! updates `&mut self`, so the index lives behind an `RwLock`.
//!
//! # Query semantics
//!
//! A [`Query`] (serde, so the API and saved searches can store it) is validated into a
//! [`PreparedQuery`]. A listing matches when every given criterion holds:
//!
//! - **text**: every searchable word of the text occurs in the listing (AND). Words are Unicode
//!   lower-cased, common Latin diacritics are folded (`é` → `e`, `ß` → `ss`, `œ` → `oe` ...), text is
//!   split on anything that is not a letter or digit, and one-character words, words over 40 bytes
//!   and a short list of English and French stopwords are dropped ([`tokens`]). The *last* word also
//!   matches as a prefix (type-ahead: `dril` finds `drills`) unless the text ends with a separator
//!   (`"drill "` is exact). A text that is a single stopword still being typed is kept as a prefix
//!   (`les` finds `lessons`); otherwise stopwords are dropped. The listing's words are its title, tags, description and the free-text
//!   terms (conditions, availability, what is wanted in return).
//! - **kinds**: the listing's kind is one of them; **category**, **tag**, **community**, **author**:
//!   equal.
//! - not expired at `now` (`valid_until > now`).
//! - **near** (a geohash, at most 6 characters: a cell, never an address) **within_km**: the distance
//!   between the centre of the query's cell and the centre of the listing's cell is at most
//!   `within_km`; a listing without a location does not match a distance filter.
//!
//! Results are ordered by [`Sort`]: `relevance` (default when there is text: a BM25 score where a
//! word in the title weighs 3, in a tag 2, elsewhere 1), `newest` (the default otherwise),
//! `distance` (needs `near`; listings without a location last) or `expiring` (soonest `valid_until`
//! first); ties go to the newest, then to the smaller record id. `offset` and `limit` page through
//! them; [`SearchResults::total`] counts every match.
//!
//! [`PreparedQuery::matches`] tests one listing against a query with the same semantics (saved
//! searches test each new listing): a listing matches exactly when `search` with a large enough
//! limit would return it. A test checks the two agree on random queries.
//!
//! # Layout and cost
//!
//! Entries live in slots (a compact "hot" part scanned by filters, a "cold" part read for results).
//! An inverted index maps each word to a sorted list of slots with the word's weighted frequency;
//! the vocabulary is laid out to cost ~60 bytes per distinct word (`search/vocab.rs`), with a word
//! order for prefix queries. Removal is lazy: a removed entry's slot is marked dead and
//! its postings stay until dead slots outnumber half the live ones, when [`SearchIndex::compact`]
//! renumbers the slots and drops them (and unused words, tags, authors and communities). Text
//! queries score with dense per-slot accumulators (cost: the postings of the query's words);
//! queries without text scan the smallest of the author, community and tag lists, or every slot.
//! Distance filters test a bounding box before the haversine. Figures (100,000 listings) are in
//! `docs/performance.md`, section Search.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use troc_protocol::geohash;
use troc_protocol::limits::MAX_GEOHASH_LEN;
use troc_protocol::{Category, Kind, Listing, ListingKey, PublicKey, RecordId, Signed, Timestamp};

use crate::FastMap as HashMap;

mod vocab;

use vocab::{MAX_SLOTS, Vocab, slot_of, tf_of};

/// Results per page when the query does not say.
pub const DEFAULT_LIMIT: usize = 20;
/// The most results one query returns.
pub const MAX_LIMIT: usize = 200;
/// The furthest a query may page (results beyond are not worth sorting).
pub const MAX_OFFSET: usize = 10_000;
/// The longest query text, in bytes.
pub const MAX_TEXT_BYTES: usize = 200;
/// The most searchable words in a query text.
pub const MAX_QUERY_WORDS: usize = 10;
/// The largest search radius (half the Earth's circumference, rounded).
pub const MAX_WITHIN_KM: f64 = 20_000.0;

/// Words longer than this (in bytes) are not indexed: they are hashes, URLs or noise, not words.
const MAX_TOKEN_BYTES: usize = 40;
/// Weights of a word by where it occurs.
const WEIGHT_TITLE: u32 = 3;
const WEIGHT_TAG: u32 = 2;
const WEIGHT_BODY: u32 = 1;
/// BM25 parameters (the usual values).
const BM25_K1: f32 = 1.2;
const BM25_B: f32 = 0.75;
/// Compaction runs when dead slots exceed this and half the live ones.
const COMPACT_MIN_DEAD: usize = 1024;

/// Stopwords, English and French, folded as the tokenizer folds them. Sorted (binary search).
const STOPWORDS: &[&str] = &[
    "an", "and", "are", "as", "at", "au", "aux", "avec", "be", "but", "by", "ce", "ces", "cet", "cette", "dans", "de",
    "des", "du", "elle", "en", "est", "et", "for", "from", "has", "have", "il", "in", "is", "it", "its", "je", "la",
    "le", "les", "leur", "ma", "mes", "mon", "my", "ne", "nous", "of", "on", "or", "ou", "our", "par", "pas", "pour",
    "qu", "que", "qui", "sa", "se", "ses", "son", "sur", "ta", "tes", "that", "the", "this", "to", "ton", "tu", "un",
    "une", "vous", "was", "we", "were", "with", "you", "your",
];

// ---------------------------------------------------------------------------------------------
// Tokenizer

/// The searchable words of a text, in order (duplicates kept): lower-cased, diacritics folded,
/// split on non-alphanumeric characters, without one-character words, over-long words and stopwords.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_owned()));
    out
}

/// Calls `f` with each searchable word of `text` (see [`tokens`]).
fn for_each_token(text: &str, f: impl FnMut(&str)) {
    split_words(text, true, f)
}

/// Calls `f` with each word of `text` of 2 to 40 bytes, lower-cased and folded; without stopwords
/// if `drop_stopwords`.
fn split_words(text: &str, drop_stopwords: bool, mut f: impl FnMut(&str)) {
    // Why bytes and not `chars()`: nearly every word of a listing is a run of ASCII letters and
    // digits, and most are lower-case already. Such a run is handed on where it lies in `text`, with
    // no copy and no per-character decoding; a word with capitals is copied once and lower-cased; a
    // word with other characters is collected character by character (folded) in `cur`. The
    // tokenizer is on every listing's ingest path (the writer's largest cost before this).
    let mut emit = |t: &str| {
        if t.len() <= MAX_TOKEN_BYTES && t.chars().nth(1).is_some() && !(drop_stopwords && is_stopword(t)) {
            f(t);
        }
    };
    let bytes = text.as_bytes();
    let mut cur = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let mut upper = false;
        while let Some(b) = bytes.get(i).filter(|b| b.is_ascii_alphanumeric()) {
            upper |= b.is_ascii_uppercase();
            i += 1;
        }
        // Does the word end here (end of text or an ASCII separator), or go on with a non-ASCII character?
        let word_ends = bytes.get(i).is_none_or(|b| b.is_ascii());
        if cur.is_empty() && word_ends {
            if upper {
                cur.push_str(&text[start..i]);
                cur.make_ascii_lowercase();
                emit(&cur);
                cur.clear();
            } else if i > start {
                emit(&text[start..i]);
            }
        } else {
            let from = cur.len();
            cur.push_str(&text[start..i]);
            cur[from..].make_ascii_lowercase();
            if word_ends {
                emit(&cur);
                cur.clear();
            }
        }
        let Some(&b) = bytes.get(i) else { break };
        if b.is_ascii() {
            // A separator: the word before it was handed on above.
            i += 1;
            continue;
        }
        // `i` is at a character boundary: it only ever moves by ASCII bytes or whole characters.
        let Some(c) = text[i..].chars().next() else { break };
        i += c.len_utf8();
        if is_combining_mark(c) {
            // A decomposed accent ("e" + U+0301): part of the word, folded away.
            continue;
        }
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                push_folded(&mut cur, l);
            }
        } else {
            emit(&cur);
            cur.clear();
        }
    }
    emit(&cur);
}

/// The longest stopword, in bytes.
const MAX_STOPWORD: usize = 5;

/// A word of at most 7 bytes as a number (its bytes, then its length): comparing two is one
/// integer comparison, not a `memcmp` (every word of every listing indexed is checked).
fn packed_word(t: &str) -> u64 {
    let mut v = [0u8; 8];
    v[..t.len()].copy_from_slice(t.as_bytes());
    v[7] = t.len() as u8;
    u64::from_be_bytes(v)
}

fn is_stopword(t: &str) -> bool {
    static PACKED: std::sync::LazyLock<Vec<u64>> = std::sync::LazyLock::new(|| {
        let mut v: Vec<u64> = STOPWORDS.iter().map(|w| packed_word(w)).collect();
        v.sort_unstable();
        v
    });
    t.len() <= MAX_STOPWORD && PACKED.binary_search(&packed_word(t)).is_ok()
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36f}')
}

/// Appends a lower-case character with common Latin diacritics folded away.
fn push_folded(out: &mut String, c: char) {
    let s = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' | 'ľ' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' => "r",
        'ß' => "ss",
        'ś' | 'š' | 'ş' => "s",
        'ť' | 'ţ' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'þ' => "th",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(s);
}

/// The weighted words of a listing, each once: their bytes back to back in one string, and for each
/// `(start, len, summed weight)`.
#[derive(Debug, Clone, Default)]
struct Words {
    text: String,
    spans: Vec<(u32, u8, u32)>,
}

impl Words {
    /// Each word with its summed weight.
    fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.spans
            .iter()
            .map(|&(start, len, weight)| (&self.text[start as usize..start as usize + len as usize], weight))
    }
}

/// The words of a listing ([`Words`]) and the document length (the sum of all weights). A listing's
/// distinct words are found with a small table keyed by FNV-1a over the bytes (a listing is at most
/// 16 KiB, so even a crafted one costs little: no need for a keyed hash here), without allocating per
/// word.
fn listing_words(l: &Listing) -> (Words, u32) {
    // Sized once from the text (a word is at least two bytes and a separator), so that neither the
    // table nor the lists grow and rehash word by word; a listing is at most 16 KiB.
    let text_len = l.title.len()
        + l.tags.iter().map(|t| t.len()).sum::<usize>()
        + l.description.len()
        + l.terms.conditions.len()
        + l.terms.availability.len()
        + l.terms.in_return.len();
    let most_words = text_len / 3 + 1;
    let mut words = Words { text: String::with_capacity(text_len), spans: Vec::with_capacity(most_words) };
    let mut table: hashbrown::HashTable<u32> = hashbrown::HashTable::with_capacity(most_words);
    let mut len = 0u32;
    let hash = |t: &str| t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let mut add = |text: &str, w: u32| {
        for_each_token(text, |t| {
            len = len.saturating_add(w);
            let h = hash(t);
            let (text, spans) = (&words.text, &mut words.spans);
            let found = table.find(h, |&i| {
                let (start, l, _) = spans[i as usize];
                &text[start as usize..start as usize + l as usize] == t
            });
            match found {
                Some(&i) => spans[i as usize].2 = spans[i as usize].2.saturating_add(w),
                None => {
                    let i = spans.len() as u32;
                    // Tokens are at most MAX_TOKEN_BYTES (40) long.
                    spans.push((words.text.len() as u32, t.len() as u8, w));
                    words.text.push_str(t);
                    let (text, spans) = (&words.text, &words.spans);
                    table.insert_unique(h, i, |&j| {
                        let (start, l, _) = spans[j as usize];
                        hash(&text[start as usize..start as usize + l as usize])
                    });
                }
            }
        })
    };
    add(&l.title, WEIGHT_TITLE);
    for tag in &l.tags {
        add(tag, WEIGHT_TAG);
    }
    add(&l.description, WEIGHT_BODY);
    add(&l.terms.conditions, WEIGHT_BODY);
    add(&l.terms.availability, WEIGHT_BODY);
    add(&l.terms.in_return, WEIGHT_BODY);
    (words, len)
}

// ---------------------------------------------------------------------------------------------
// Queries

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best text match first (needs text).
    Relevance,
    /// Newest first.
    Newest,
    /// Nearest first (needs `near`); listings without a location last.
    Distance,
    /// Soonest expiry first.
    Expiring,
}

impl Sort {
    pub const ALL: &'static [Sort] = &[Sort::Relevance, Sort::Newest, Sort::Distance, Sort::Expiring];

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::Newest => "newest",
            Sort::Distance => "distance",
            Sort::Expiring => "expiring",
        }
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sort {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sort::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| QueryError::UnknownSort(s.to_owned()))
    }
}

/// A search: what the CLI, the API and saved searches send and store. Every field is optional in
/// JSON; unknown fields are refused. Checked by [`Query::prepare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Query {
    /// Words that must all occur (the last one also as a prefix).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Any of these kinds; empty for every kind.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<PublicKey>,
    /// Where from: a geohash of 1 to 6 characters (see [`Query::near_position`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    /// The largest distance from `near`, in km, between cell centres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_km: Option<f64>,
    /// `None`: relevance when there is text, newest otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<Sort>,
    pub limit: usize,
    pub offset: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            text: String::new(),
            kinds: Vec::new(),
            category: None,
            tag: None,
            community: None,
            author: None,
            near: None,
            within_km: None,
            sort: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("the search text is {len} bytes long; at most {max}")]
    TextTooLong { len: usize, max: usize },
    #[error("the search text has {count} words; at most {max}")]
    TooManyWords { count: usize, max: usize },
    #[error("the search text has no searchable word (one-letter words and words like 'the' or 'le' are ignored)")]
    NoSearchableWords,
    #[error("limit {0} is out of range: 1 to {MAX_LIMIT}")]
    LimitOutOfRange(usize),
    #[error("offset {0} is too large: at most {MAX_OFFSET}")]
    OffsetTooLarge(usize),
    #[error("near {0:?} is not a geohash of 1 to {MAX_GEOHASH_LEN} characters")]
    InvalidNear(String),
    #[error("within_km {0} is out of range: more than 0, at most {MAX_WITHIN_KM}")]
    WithinOutOfRange(f64),
    #[error("within_km needs near (where from)")]
    WithinWithoutNear,
    #[error("near needs within_km or sort=distance")]
    NearUnused,
    #[error("sort=distance needs near")]
    DistanceSortWithoutNear,
    #[error("sort=relevance needs a search text")]
    RelevanceWithoutText,
    #[error("tag {0:?} is not a tag (a-z, 0-9 and inner dashes, at most 32 bytes)")]
    InvalidTag(String),
    #[error("community {0:?} is not a community name (a-z, 0-9 and inner dashes, at most 64 bytes)")]
    InvalidCommunity(String),
    #[error("unknown sort {0:?}; expected one of: relevance, newest, distance, expiring")]
    UnknownSort(String),
}

fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

impl Query {
    /// A query for the given text, every other field at its default.
    pub fn with_text(text: impl Into<String>) -> Self {
        Query { text: text.into(), ..Query::default() }
    }

    /// Sets `near` to the 6-character cell holding a position (coarsened here, never stored exactly).
    pub fn near_position(mut self, lat: f64, lon: f64, within_km: Option<f64>) -> Self {
        self.near = Some(geohash::encode(lat, lon, MAX_GEOHASH_LEN));
        self.within_km = within_km;
        self
    }

    /// Checks the query and prepares it for [`SearchIndex::search_prepared`] and
    /// [`PreparedQuery::matches`].
    pub fn prepare(&self) -> Result<PreparedQuery, QueryError> {
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(QueryError::TextTooLong { len: self.text.len(), max: MAX_TEXT_BYTES });
        }
        let ends_in_word = self.text.chars().next_back().is_some_and(|c| c.is_alphanumeric() || is_combining_mark(c));
        let mut words = tokens(&self.text);
        let one_word = || {
            self.text.split(|c: char| !c.is_alphanumeric() && !is_combining_mark(c)).filter(|w| !w.is_empty()).count()
                == 1
        };
        if words.is_empty() && ends_in_word && one_word() {
            // Type-ahead on a first word that is still a stopword ("les" on the way to "lessons").
            let mut all = Vec::new();
            split_words(&self.text, false, |t| all.push(t.to_owned()));
            words.extend(all.pop().filter(|_| all.is_empty()));
        }
        if words.len() > MAX_QUERY_WORDS {
            return Err(QueryError::TooManyWords { count: words.len(), max: MAX_QUERY_WORDS });
        }
        if words.is_empty() && !self.text.trim().is_empty() {
            return Err(QueryError::NoSearchableWords);
        }
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(QueryError::LimitOutOfRange(self.limit));
        }
        if self.offset > MAX_OFFSET {
            return Err(QueryError::OffsetTooLarge(self.offset));
        }
        if let Some(tag) = &self.tag
            && !is_slug(tag, troc_protocol::limits::MAX_TAG)
        {
            return Err(QueryError::InvalidTag(tag.clone()));
        }
        if let Some(c) = &self.community
            && troc_protocol::types::check_community(c).is_err()
        {
            return Err(QueryError::InvalidCommunity(c.clone()));
        }
        let near = match &self.near {
            None => None,
            Some(g) if g.len() > MAX_GEOHASH_LEN => return Err(QueryError::InvalidNear(g.clone())),
            Some(g) => Some(cell_point(g).ok_or_else(|| QueryError::InvalidNear(g.clone()))?),
        };
        if let Some(w) = self.within_km
            && !(w > 0.0 && w <= MAX_WITHIN_KM)
        {
            return Err(QueryError::WithinOutOfRange(w));
        }
        let has_text = !words.is_empty();
        let sort = self.sort.unwrap_or(if has_text { Sort::Relevance } else { Sort::Newest });
        match (near.is_some(), self.within_km.is_some(), sort) {
            (false, true, _) => return Err(QueryError::WithinWithoutNear),
            (false, false, Sort::Distance) => return Err(QueryError::DistanceSortWithoutNear),
            (true, false, s) if s != Sort::Distance => return Err(QueryError::NearUnused),
            _ => {}
        }
        if sort == Sort::Relevance && !has_text {
            return Err(QueryError::RelevanceWithoutText);
        }

        // Words: duplicates dropped; the last one is a prefix unless the text ends with a separator.
        let n = words.len();
        let mut terms: Vec<Term> = Vec::with_capacity(n);
        for (i, w) in words.into_iter().enumerate() {
            let prefix = ends_in_word && i + 1 == n;
            if !terms.iter().any(|t| t.word == w && t.prefix == prefix) {
                terms.push(Term { word: w, prefix });
            }
        }
        let mut kinds = 0u8;
        for k in &self.kinds {
            kinds |= 1 << k.code();
        }
        let area = match (near, self.within_km) {
            (Some(p), Some(w)) => Some(Area::new(p, w)),
            _ => None,
        };
        Ok(PreparedQuery {
            terms,
            kinds,
            category: self.category,
            tag: self.tag.clone(),
            community: self.community.clone(),
            author: self.author,
            near,
            area,
            sort,
            limit: self.limit,
            offset: self.offset,
        })
    }
}

/// One query word.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    word: String,
    /// Also matches longer words that start with it.
    prefix: bool,
}

/// A circle around the query's cell centre, with a bounding box to reject far points cheaply.
#[derive(Debug, Clone, Copy)]
struct Area {
    centre: (f64, f64),
    within_km: f64,
    /// (lat_min, lat_max, lon_min, lon_max), or `None` when the circle reaches a pole or the
    /// antimeridian (then only the haversine decides).
    bbox: Option<(f64, f64, f64, f64)>,
}

/// Kilometres per degree of latitude, a little under the true ~111.2 so the box is never too small.
const KM_PER_DEGREE: f64 = 110.0;

impl Area {
    fn new(centre: (f32, f32), within_km: f64) -> Self {
        let centre = (centre.0 as f64, centre.1 as f64);
        let dlat = within_km / KM_PER_DEGREE + 0.01;
        let (lat_min, lat_max) = (centre.0 - dlat, centre.0 + dlat);
        let far = lat_min.abs().max(lat_max.abs());
        let bbox = if far < 85.0 {
            let dlon = within_km / (KM_PER_DEGREE * far.to_radians().cos()) + 0.01;
            let (lon_min, lon_max) = (centre.1 - dlon, centre.1 + dlon);
            (lon_min > -180.0 && lon_max < 180.0).then_some((lat_min, lat_max, lon_min, lon_max))
        } else {
            None
        };
        Area { centre, within_km, bbox }
    }

    /// The distance to `p` if it is inside the circle.
    fn distance_within(&self, p: (f32, f32)) -> Option<f64> {
        let p = (p.0 as f64, p.1 as f64);
        if let Some((a, b, c, d)) = self.bbox
            && !(p.0 >= a && p.0 <= b && p.1 >= c && p.1 <= d)
        {
            return None;
        }
        let dist = geohash::haversine_km(self.centre, p);
        (dist <= self.within_km).then_some(dist)
    }
}

/// The centre of a geohash cell, as the index keeps it.
fn cell_point(hash: &str) -> Option<(f32, f32)> {
    geohash::center(hash).map(|(lat, lon)| (lat as f32, lon as f32))
}

/// A checked query, ready to run (or to test listings against, for a saved search).
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    terms: Vec<Term>,
    /// Bit `code` set for each allowed kind; 0 for every kind.
    kinds: u8,
    category: Option<Category>,
    tag: Option<String>,
    community: Option<String>,
    author: Option<PublicKey>,
    near: Option<(f32, f32)>,
    area: Option<Area>,
    sort: Sort,
    limit: usize,
    offset: usize,
}

/// How a listing stands against the location part of a query.
enum Place {
    Outside,
    /// Accepted, with its distance when both sides have a location.
    Inside(Option<f64>),
}

impl PreparedQuery {
    /// The order results come in.
    pub fn sort(&self) -> Sort {
        self.sort
    }

    /// Whether a listing matches the query at `now`: exactly when [`SearchIndex::search_prepared`]
    /// would count it (sort, limit and offset aside).
    pub fn matches(&self, listing: &Signed<Listing>, now: Timestamp) -> bool {
        let l = listing.body();
        if !self.fields_match(l.kind, l.category, l.valid_until, now)
            || self.author.is_some_and(|a| a != *listing.author())
            || self.community.as_ref().is_some_and(|c| *c != l.community)
            || self.tag.as_ref().is_some_and(|t| !l.tags.contains(t))
        {
            return false;
        }
        if let Place::Outside = self.place(cell_point(&l.location)) {
            return false;
        }
        if self.terms.is_empty() {
            return true;
        }
        let (words, _) = listing_words(l);
        self.terms
            .iter()
            .all(|t| words.iter().any(|(w, _)| if t.prefix { w.starts_with(&t.word) } else { w == t.word }))
    }

    /// Kind, category and expiry.
    fn fields_match(&self, kind: Kind, category: Category, valid_until: Timestamp, now: Timestamp) -> bool {
        (self.kinds == 0 || self.kinds & (1 << kind.code()) != 0)
            && self.category.is_none_or(|c| c == category)
            && valid_until > now
    }

    fn place(&self, point: Option<(f32, f32)>) -> Place {
        if let Some(area) = &self.area {
            return match point.and_then(|p| area.distance_within(p)) {
                Some(d) => Place::Inside(Some(d)),
                None => Place::Outside,
            };
        }
        match (self.near, point) {
            (Some(n), Some(p)) => {
                Place::Inside(Some(geohash::haversine_km((n.0 as f64, n.1 as f64), (p.0 as f64, p.1 as f64))))
            }
            _ => Place::Inside(None),
        }
    }
}

/// Whether one listing matches a query at `now` (for saved searches; prepare the query once with
/// [`Query::prepare`] and call [`PreparedQuery::matches`] when testing many listings).
pub fn matches(query: &Query, listing: &Signed<Listing>, now: Timestamp) -> Result<bool, QueryError> {
    Ok(query.prepare()?.matches(listing, now))
}

// ---------------------------------------------------------------------------------------------
// Results

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The listing's current revision.
    pub id: RecordId,
    pub author: PublicKey,
    pub key: ListingKey,
    pub title: String,
    /// The text relevance (0 without text).
    pub score: f32,
    /// Distance between the centres of the query's and the listing's cells, in km, to 0.1 km: no
    /// more precise than the cells. Show it with [`rough_distance`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
}

impl Hit {
    /// "about 3 km", when there is a distance.
    pub fn rough_distance(&self) -> Option<String> {
        self.distance_km.map(rough_distance)
    }
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    /// How many listings match (all pages).
    pub total: usize,
    pub hits: Vec<Hit>,
}

/// A distance as people should see it: "< 1 km", "about 2 km", "about 15 km", "about 340 km".
/// Rounded to 1 km under 10 km, 5 km under 50, 10 km under 500, 50 km under 2000, 100 km beyond:
/// never more precise than the cells it is measured between.
pub fn rough_distance(km: f64) -> String {
    if km.is_nan() {
        return "unknown distance".to_owned();
    }
    if km < 1.0 {
        return "< 1 km".to_owned();
    }
    let step = match km {
        k if k < 10.0 => 1.0,
        k if k < 50.0 => 5.0,
        k if k < 500.0 => 10.0,
        k if k < 2000.0 => 50.0,
        _ => 100.0,
    };
    let rounded = ((km / step).round() * step).min(MAX_WITHIN_KM);
    format!("about {rounded:.0} km")
}

// ---------------------------------------------------------------------------------------------
// The index

/// The part of an entry filters read (kept small: scans walk it).
#[derive(Debug, Clone, Copy)]
struct Hot {
    created_at: Timestamp,
    valid_until: Timestamp,
    /// The cell centre, or NaN without a location.
    lat: f32,
    lon: f32,
    author: u32,
    community: u32,
    /// Sum of the weights of the words (BM25's document length).
    doc_len: u16,
    kind: Kind,
    category: Category,
    alive: bool,
}

impl Hot {
    fn point(&self) -> Option<(f32, f32)> {
        (!self.lat.is_nan()).then_some((self.lat, self.lon))
    }
}

/// The part of an entry results read.
#[derive(Debug, Clone)]
struct Cold {
    id: RecordId,
    key: ListingKey,
    revision: u32,
    title: Box<str>,
}

/// An interned author: the key and their slots.
#[derive(Debug, Clone)]
struct AuthorEntry {
    key: PublicKey,
    slots: Vec<u32>,
}

/// A match being ranked.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    slot: u32,
    score: f32,
    distance: Option<f64>,
}

/// A listing made ready for [`SearchIndex::upsert_document`]: its words found, folded, weighed and
/// counted. Making one is most of the cost of indexing a listing, and needs no access to the index.
#[derive(Debug, Clone)]
pub struct Document {
    id: RecordId,
    author: PublicKey,
    created_at: Timestamp,
    key: ListingKey,
    revision: u32,
    valid_until: Timestamp,
    kind: Kind,
    category: Category,
    community: Box<str>,
    tags: Vec<Box<str>>,
    title: Box<str>,
    point: Option<(f32, f32)>,
    /// Each distinct word with its weighted frequency.
    words: Words,
    doc_len: u16,
}

impl Document {
    /// The document of a listing with this id, author and creation time (a verified record's; the
    /// caller vouches for that, the index only reads the fields).
    pub fn new(id: RecordId, author: &PublicKey, created_at: Timestamp, l: &Listing) -> Self {
        let (words, doc_len) = listing_words(l);
        Document {
            id,
            author: *author,
            created_at,
            key: l.key,
            revision: l.revision,
            valid_until: l.valid_until,
            kind: l.kind,
            category: l.category,
            community: l.community.as_str().into(),
            tags: l.tags.iter().map(|t| t.as_str().into()).collect(),
            title: l.title.as_str().into(),
            point: cell_point(&l.location),
            words,
            doc_len: u16::try_from(doc_len).unwrap_or(u16::MAX),
        }
    }

    /// The document of a verified listing.
    pub fn of(listing: &Signed<Listing>) -> Self {
        Document::new(listing.id(), listing.author(), listing.created_at(), listing.body())
    }

    /// The id of the listing revision it describes.
    pub fn id(&self) -> RecordId {
        self.id
    }
}

/// The in-memory search index of the live listings. See the module documentation.
#[derive(Clone, Default)]
pub struct SearchIndex {
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    /// Live entries, and the sum of their document lengths (BM25's average).
    live: usize,
    live_doc_len: u64,
    /// Every indexed word and its postings (`vocab.rs`).
    vocab: Vocab,
    tags: HashMap<Box<str>, Vec<u32>>,
    authors: Vec<AuthorEntry>,
    author_ids: HashMap<[u8; 32], u32>,
    communities: Vec<(Box<str>, Vec<u32>)>,
    community_ids: HashMap<Box<str>, u32>,
    by_address: HashMap<(u32, ListingKey), u32>,
    by_id: HashMap<RecordId, u32>,
}

impl fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchIndex")
            .field("live", &self.live)
            .field("slots", &self.hot.len())
            .field("words", &self.vocab.len())
            .field("tags", &self.tags.len())
            .field("authors", &self.authors.len())
            .field("communities", &self.communities.len())
            .finish()
    }
}

impl SearchIndex {
    /// An empty index.
    pub fn new() -> Self {
        SearchIndex::default()
    }

    /// An index of the given listings (typically `Store::listings` with the default filter),
    /// leaving out those expired at `now`.
    pub fn build<L: Borrow<Signed<Listing>>>(listings: impl IntoIterator<Item = L>, now: Timestamp) -> Self {
        let mut index = SearchIndex::new();
        for l in listings {
            let l = l.borrow();
            if l.body().valid_until > now {
                index.upsert(l);
            }
        }
        index.shrink_to_fit();
        index
    }

    /// Gives back the spare capacity of every list (build does it once at the end).
    pub fn shrink_to_fit(&mut self) {
        self.vocab.shrink_to_fit();
        self.tags.values_mut().for_each(Vec::shrink_to_fit);
        self.authors.iter_mut().for_each(|a| a.slots.shrink_to_fit());
        self.communities.iter_mut().for_each(|c| c.1.shrink_to_fit());
        self.hot.shrink_to_fit();
        self.cold.shrink_to_fit();
    }

    /// Live listings in the index.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether this revision is the one indexed for its address.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Indexes a listing, replacing the entry of an older revision of the same address. Returns
    /// false, and changes nothing, when the same or a newer revision is already indexed.
    pub fn upsert(&mut self, listing: &Signed<Listing>) -> bool {
        self.upsert_document(Document::of(listing))
    }

    /// [`SearchIndex::upsert`] of a listing prepared with [`Document::new`] (the costly part, the
    /// words, is then done before taking the index's lock, e.g. on the ingest verification thread).
    pub fn upsert_document(&mut self, doc: Document) -> bool {
        let author = self.intern_author(&doc.author);
        if let Some(&slot) = self.by_address.get(&(author, doc.key)) {
            if self.cold[slot as usize].revision >= doc.revision {
                return false;
            }
            self.kill(slot);
        }
        if self.hot.len() >= MAX_SLOTS {
            self.compact();
            if self.hot.len() >= MAX_SLOTS {
                // 16 million live listings: unreachable under the store's quotas.
                return false;
            }
        }
        let slot = self.hot.len() as u32;
        let community = self.intern_community(&doc.community);
        for (word, weight) in doc.words.iter() {
            self.vocab.add(word, slot, u8::try_from(weight).unwrap_or(u8::MAX));
        }
        for tag in doc.tags {
            match self.tags.get_mut(&*tag) {
                Some(v) => v.push(slot),
                None => {
                    self.tags.insert(tag, vec![slot]);
                }
            }
        }
        self.authors[author as usize].slots.push(slot);
        self.communities[community as usize].1.push(slot);
        let (lat, lon) = doc.point.unwrap_or((f32::NAN, f32::NAN));
        self.hot.push(Hot {
            created_at: doc.created_at,
            valid_until: doc.valid_until,
            lat,
            lon,
            author,
            community,
            doc_len: doc.doc_len,
            kind: doc.kind,
            category: doc.category,
            alive: true,
        });
        self.cold.push(Cold { id: doc.id, key: doc.key, revision: doc.revision, title: doc.title });
        self.by_address.insert((author, doc.key), slot);
        self.by_id.insert(doc.id, slot);
        self.live += 1;
        self.live_doc_len += doc.doc_len as u64;
        true
    }

    /// Removes the listing at an address (a withdrawal). Returns whether there was one.
    pub fn remove_address(&mut self, author: &PublicKey, key: &ListingKey) -> bool {
        let Some(&author) = self.author_ids.get(author.as_bytes()) else { return false };
        match self.by_address.get(&(author, *key)) {
            Some(&slot) => {
                self.kill(slot);
                self.maybe_compact();
                true
            }
            None => false,
        }
    }

    /// Removes a listing by the id of its indexed revision (a revocation, or the `replaced` id the
    /// store reports). Returns whether it was indexed.
    pub fn remove_id(&mut self, id: &RecordId) -> bool {
        match self.by_id.get(id) {
            Some(&slot) => {
                self.kill(slot);
                self.maybe_compact();
                true
            }
            None => false,
        }
    }

    /// Removes the listings expired at `now`; returns how many. (Searches skip them anyway.)
    pub fn remove_expired(&mut self, now: Timestamp) -> usize {
        let expired: Vec<u32> = (0..self.hot.len() as u32)
            .filter(|&s| {
                let h = &self.hot[s as usize];
                h.alive && h.valid_until <= now
            })
            .collect();
        for &slot in &expired {
            self.kill(slot);
        }
        self.maybe_compact();
        expired.len()
    }

    fn kill(&mut self, slot: u32) {
        let h = &mut self.hot[slot as usize];
        if !h.alive {
            return;
        }
        h.alive = false;
        self.live -= 1;
        self.live_doc_len -= h.doc_len as u64;
        let author = h.author;
        let c = &mut self.cold[slot as usize];
        c.title = Box::default();
        self.by_address.remove(&(author, c.key));
        self.by_id.remove(&c.id);
    }

    fn intern_author(&mut self, key: &PublicKey) -> u32 {
        if let Some(&id) = self.author_ids.get(key.as_bytes()) {
            return id;
        }
        let id = self.authors.len() as u32;
        self.authors.push(AuthorEntry { key: *key, slots: Vec::new() });
        self.author_ids.insert(*key.as_bytes(), id);
        id
    }

    fn intern_community(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.community_ids.get(name) {
            return id;
        }
        let id = self.communities.len() as u32;
        self.communities.push((name.into(), Vec::new()));
        self.community_ids.insert(name.into(), id);
        id
    }

    fn maybe_compact(&mut self) {
        let dead = self.hot.len() - self.live;
        if dead > COMPACT_MIN_DEAD && dead > self.live / 2 {
            self.compact();
        }
    }

    /// Drops dead slots: renumbers the live entries and rewrites every list, dropping words, tags,
    /// authors and communities no live listing uses. Runs by itself when dead slots exceed half the
    /// live ones; cost linear in the postings.
    pub fn compact(&mut self) {
        let mut map = vec![u32::MAX; self.hot.len()];
        let mut next = 0u32;
        for (slot, h) in self.hot.iter().enumerate() {
            if h.alive {
                map[slot] = next;
                next += 1;
            }
        }
        let keep = |v: &mut Vec<u32>| {
            v.retain_mut(|s| {
                *s = map[*s as usize];
                *s != u32::MAX
            });
            shrink(v);
        };
        self.vocab.compact(&map);
        self.tags.retain(|_, v| {
            keep(v);
            !v.is_empty()
        });
        let hot = std::mem::take(&mut self.hot);
        let cold = std::mem::take(&mut self.cold);
        let (mut hot, cold): (Vec<Hot>, Vec<Cold>) = hot.into_iter().zip(cold).filter(|(h, _)| h.alive).unzip();
        // Authors and communities: renumbered in order of first use by a live entry.
        let old_authors = std::mem::take(&mut self.authors);
        let old_communities = std::mem::take(&mut self.communities);
        self.author_ids.clear();
        self.community_ids.clear();
        let mut amap = vec![u32::MAX; old_authors.len()];
        let mut cmap = vec![u32::MAX; old_communities.len()];
        for (slot, h) in hot.iter_mut().enumerate() {
            let a = &mut amap[h.author as usize];
            if *a == u32::MAX {
                *a = self.authors.len() as u32;
                let key = old_authors[h.author as usize].key;
                self.author_ids.insert(*key.as_bytes(), *a);
                self.authors.push(AuthorEntry { key, slots: Vec::new() });
            }
            h.author = *a;
            self.authors[*a as usize].slots.push(slot as u32);
            let c = &mut cmap[h.community as usize];
            if *c == u32::MAX {
                *c = self.communities.len() as u32;
                let name = old_communities[h.community as usize].0.clone();
                self.community_ids.insert(name.clone(), *c);
                self.communities.push((name, Vec::new()));
            }
            h.community = *c;
            self.communities[*c as usize].1.push(slot as u32);
        }
        self.by_address = hot.iter().zip(&cold).enumerate().map(|(s, (h, c))| ((h.author, c.key), s as u32)).collect();
        self.by_id = cold.iter().enumerate().map(|(s, c)| (c.id, s as u32)).collect();
        self.hot = hot;
        self.cold = cold;
    }

    /// Checks and runs a query at `now`.
    pub fn search(&self, query: &Query, now: Timestamp) -> Result<SearchResults, QueryError> {
        Ok(self.search_prepared(&query.prepare()?, now))
    }

    /// Runs a prepared query at `now`.
    pub fn search_prepared(&self, q: &PreparedQuery, now: Timestamp) -> SearchResults {
        let empty = SearchResults { total: 0, hits: Vec::new() };
        // Filters on interned values: an unknown author, community or tag matches nothing.
        let author = match &q.author {
            Some(a) => match self.author_ids.get(a.as_bytes()) {
                Some(&id) => Some(id),
                None => return empty,
            },
            None => None,
        };
        let community = match &q.community {
            Some(c) => match self.community_ids.get(c.as_str()) {
                Some(&id) => Some(id),
                None => return empty,
            },
            None => None,
        };
        let tag = match &q.tag {
            Some(t) => match self.tags.get(t.as_str()) {
                Some(list) => Some(list),
                None => return empty,
            },
            None => None,
        };

        let mut found: Vec<Candidate> = Vec::new();
        let mut consider = |slot: u32, score: f32| {
            let h = &self.hot[slot as usize];
            if !h.alive
                || !q.fields_match(h.kind, h.category, h.valid_until, now)
                || author.is_some_and(|a| a != h.author)
                || community.is_some_and(|c| c != h.community)
                || tag.is_some_and(|t| t.binary_search(&slot).is_err())
            {
                return;
            }
            if let Place::Inside(distance) = q.place(h.point()) {
                found.push(Candidate { slot, score, distance });
            }
        };
        if !q.terms.is_empty() {
            for (slot, score) in self.text_matches(&q.terms) {
                consider(slot, score);
            }
        } else {
            // The smallest list that every match is in, or every slot.
            let lists = [
                author.map(|a| &self.authors[a as usize].slots),
                community.map(|c| &self.communities[c as usize].1),
                tag,
            ];
            match lists.into_iter().flatten().min_by_key(|l| l.len()) {
                Some(list) => list.iter().for_each(|&s| consider(s, 0.0)),
                None => (0..self.hot.len() as u32).for_each(|s| consider(s, 0.0)),
            }
        }

        let total = found.len();
        let want = q.offset.saturating_add(q.limit);
        let order = |a: &Candidate, b: &Candidate| self.order(q.sort, a, b);
        if want < found.len() {
            found.select_nth_unstable_by(want, order);
            found.truncate(want);
        }
        found.sort_unstable_by(order);
        let hits = found
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|c| {
                let h = &self.hot[c.slot as usize];
                let cold = &self.cold[c.slot as usize];
                Hit {
                    id: cold.id,
                    author: self.authors[h.author as usize].key,
                    key: cold.key,
                    title: cold.title.to_string(),
                    score: c.score,
                    distance_km: c.distance.map(|d| (d * 10.0).round() / 10.0),
                }
            })
            .collect();
        SearchResults { total, hits }
    }

    /// The slots holding every term (dead slots included), with their BM25 scores.
    fn text_matches(&self, terms: &[Term]) -> Vec<(u32, f32)> {
        // Each term's posting lists: one for an exact word, every word in the range for a prefix.
        let mut groups: Vec<(usize, Vec<&[u32]>)> = Vec::with_capacity(terms.len());
        for t in terms {
            let lists: Vec<&[u32]> = if t.prefix {
                self.vocab.with_prefix(&t.word).into_iter().map(|id| self.vocab.postings(id)).collect()
            } else {
                self.vocab.get(&t.word).map(|id| self.vocab.postings(id)).into_iter().collect()
            };
            if lists.is_empty() {
                return Vec::new();
            }
            groups.push((lists.iter().map(|p| p.len()).sum(), lists));
        }
        // Smallest first: the first term decides the candidates, later ones only narrow them.
        groups.sort_by_key(|g| g.0);
        let n = self.live.max(1) as f32;
        let avg_len = (self.live_doc_len as f32 / n).max(1.0);
        // Dense accumulators: how many terms each slot matched so far, and its score.
        let mut count = vec![0u8; self.hot.len()];
        let mut score = vec![0f32; self.hot.len()];
        let mut candidates: Vec<u32> = Vec::new();
        for (g, (_, lists)) in groups.iter().enumerate() {
            let g = g as u8;
            for p in lists {
                let df = p.len() as f32;
                let idf = ((n - df + 0.5) / (df + 0.5)).max(0.0).ln_1p();
                for &posting in p.iter() {
                    let (slot, tf) = (slot_of(posting), tf_of(posting));
                    let s = slot as usize;
                    let c = count[s];
                    if c != g && c != g + 1 {
                        continue;
                    }
                    if c == g {
                        count[s] = g + 1;
                        if g == 0 {
                            candidates.push(slot);
                        }
                    }
                    let tf = tf as f32;
                    let norm = 1.0 - BM25_B + BM25_B * self.hot[s].doc_len as f32 / avg_len;
                    score[s] += idf * tf * (BM25_K1 + 1.0) / (tf + BM25_K1 * norm);
                }
            }
        }
        let all = groups.len() as u8;
        candidates.into_iter().filter(|&s| count[s as usize] == all).map(|s| (s, score[s as usize])).collect()
    }

    fn order(&self, sort: Sort, a: &Candidate, b: &Candidate) -> Ordering {
        let (ha, hb) = (&self.hot[a.slot as usize], &self.hot[b.slot as usize]);
        let newest = || {
            hb.created_at
                .cmp(&ha.created_at)
                .then_with(|| self.cold[a.slot as usize].id.cmp(&self.cold[b.slot as usize].id))
        };
        match sort {
            Sort::Relevance => b.score.total_cmp(&a.score).then_with(newest),
            Sort::Newest => newest(),
            Sort::Distance => match (a.distance, b.distance) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
            .then_with(newest),
            Sort::Expiring => ha.valid_until.cmp(&hb.valid_until).then_with(newest),
        }
    }

    /// An estimate of the heap and inline bytes the index holds (capacities, not lengths; maps
    /// counted at their payload plus one control byte per bucket; B-tree nodes at ~1.5x the keys).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let map_bytes = |cap: usize, entry: usize| cap * (entry + 1);
        let mut b = size_of::<Self>();
        b += self.hot.capacity() * size_of::<Hot>();
        b += self.cold.capacity() * size_of::<Cold>();
        b += self.cold.iter().map(|c| c.title.len()).sum::<usize>();
        b += self.vocab.memory_bytes();
        b += map_bytes(self.tags.capacity(), size_of::<(Box<str>, Vec<u32>)>());
        b += self.tags.iter().map(|(t, v)| t.len() + v.capacity() * 4).sum::<usize>();
        b += self.authors.capacity() * size_of::<AuthorEntry>();
        b += self.authors.iter().map(|a| a.slots.capacity() * 4).sum::<usize>();
        b += map_bytes(self.author_ids.capacity(), size_of::<([u8; 32], u32)>());
        b += self.communities.capacity() * size_of::<(Box<str>, Vec<u32>)>();
        b += self.communities.iter().map(|(c, v)| 2 * c.len() + v.capacity() * 4).sum::<usize>();
        b += map_bytes(self.community_ids.capacity(), size_of::<(Box<str>, u32)>());
        b += map_bytes(self.by_address.capacity(), size_of::<((u32, ListingKey), u32)>());
        b += map_bytes(self.by_id.capacity(), size_of::<(RecordId, u32)>());
        b
    }

    /// The distinct indexed words (dead entries' words until the next compaction).
    pub fn word_count(&self) -> usize {
        self.vocab.len()
    }
}

/// Gives back most of a list's spare capacity after it shrank a lot.
fn shrink<T>(v: &mut Vec<T>) {
    if v.capacity() > 2 * v.len() + 4 {
        v.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use troc_protocol::{Identity, Terms};

    use super::*;

    const T0: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn who(n: u8) -> Identity {
        Identity::from_seed(&[n; 32])
    }

    fn body(key: u8, title: &str) -> Listing {
        Listing {
            key: ListingKey([key; 16]),
            revision: 1,
            kind: Kind::Lend,
            category: Category::Tools,
            title: title.into(),
            description: String::new(),
            tags: vec![],
            terms: Terms::default(),
            community: "paris-11".into(),
            location: String::new(),
            available_from: None,
            available_until: None,
            valid_until: T0 + 30 * DAY,
        }
    }

    fn sign(by: &Identity, created_at: u64, l: Listing) -> Signed<Listing> {
        Signed::sign(by, created_at, l).expect("sign")
    }

    /// A listing by `who(1)` at key `key`, created `key` minutes after T0.
    fn listing(key: u8, title: &str, f: impl FnOnce(&mut Listing)) -> Signed<Listing> {
        let mut l = body(key, title);
        f(&mut l);
        sign(&who(1), T0 + 60 * key as u64, l)
    }

    fn ids(r: &SearchResults) -> Vec<RecordId> {
        r.hits.iter().map(|h| h.id).collect()
    }

    fn run(index: &SearchIndex, q: Query) -> Vec<RecordId> {
        ids(&index.search(&q, T0).expect("valid query"))
    }

    fn text(t: &str) -> Query {
        Query::with_text(t)
    }

    #[test]
    fn stopword_list_is_sorted_and_folded() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
        for w in STOPWORDS {
            assert_eq!(tokens(&format!("x{w}")), vec![format!("x{w}")], "{w} is a folded token");
        }
    }

    #[test]
    fn tokenizer() {
        assert_eq!(tokens("Perceuse ÉLECTRIQUE, 18V!"), ["perceuse", "electrique", "18v"]);
        assert_eq!(tokens("Straße garçon Ñandú œuvre"), ["strasse", "garcon", "nandu", "oeuvre"]);
        // A decomposed accent is folded like a composed one.
        assert_eq!(tokens("e\u{301}te\u{301}"), ["ete"]);
        // One-letter words and stopwords are dropped; other scripts are kept.
        assert_eq!(tokens("a drill for the garden, l'outil de jardin"), ["drill", "garden", "outil", "jardin"]);
        assert_eq!(tokens("дрель 電動ドリル"), ["дрель", "電動ドリル"]);
        assert!(tokens(&"x".repeat(41)).is_empty());
    }

    #[test]
    fn text_is_and_with_prefix_on_the_last_word() {
        let a = listing(1, "Cordless drill", |_| {});
        let b = listing(2, "Drill press", |_| {});
        let c = listing(3, "Cordless saw", |_| {});
        let d = listing(4, "Set of drills", |_| {});
        let index = SearchIndex::build([a.clone(), b.clone(), c.clone(), d.clone()], T0);
        assert_eq!(run(&index, text("cordless drill")), [a.id()]);
        // "drill" as the last word is also a prefix: "drills".
        assert_eq!(run(&index, text("drill")), [d.id(), b.id(), a.id()]);
        assert_eq!(run(&index, text("dri")).len(), 3);
        // Not the last word: exact.
        assert!(run(&index, text("dri press")).is_empty());
        // The text ends with a separator: the last word is exact too.
        assert_eq!(run(&index, text("drill ")), [b.id(), a.id()]);
        assert_eq!(run(&index, text("cordless")), [c.id(), a.id()]);
        assert!(run(&index, text("hammer")).is_empty());
    }

    /// The tokenizer as it was written first, one character at a time: the oracle for the
    /// byte-wise one.
    fn split_words_by_chars(text: &str, drop_stopwords: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut flush = |cur: &mut String| {
            if cur.len() <= MAX_TOKEN_BYTES && cur.chars().nth(1).is_some() && !(drop_stopwords && is_stopword(cur)) {
                out.push(cur.clone());
            }
            cur.clear();
        };
        for c in text.chars() {
            if is_combining_mark(c) {
                continue;
            }
            if c.is_alphanumeric() {
                for l in c.to_lowercase() {
                    push_folded(&mut cur, l);
                }
            } else {
                flush(&mut cur);
            }
        }
        flush(&mut cur);
        out
    }

    fn split(text: &str, drop_stopwords: bool) -> Vec<String> {
        let mut out = Vec::new();
        split_words(text, drop_stopwords, |t| out.push(t.to_owned()));
        out
    }

    #[test]
    fn the_tokenizer_splits_and_folds() {
        for (text, want) in [
            ("Cordless DRILL, 18V (Bosch)", &["cordless", "drill", "18v", "bosch"][..]),
            ("Große Straße: café crème", &["grosse", "strasse", "cafe", "creme"]),
            ("e\u{301}te\u{301} x ÉTÉ", &["ete", "ete"]),
            ("Œuvre—naïve l'été", &["oeuvre", "naive", "ete"]),
            ("дрель Дрель", &["дрель", "дрель"]),
            ("the drill and the saw", &["drill", "saw"]),
            ("", &[]),
        ] {
            assert_eq!(split(text, true), want, "{text:?}");
        }
        // Over-long words are dropped; 40 bytes is kept.
        assert_eq!(split(&"a".repeat(41), true), Vec::<String>::new());
        assert_eq!(split(&"a".repeat(40), true), ["a".repeat(40)]);
    }

    proptest::proptest! {
        #[test]
        fn the_tokenizer_matches_the_character_oracle(
            text in r"(?s)[a-zA-Z0-9 ,.'éÉèßœŒçıİ\u{301}\u{300}дД日本—_\t\n-]{0,80}|\PC{0,60}",
            drop in proptest::bool::ANY,
        ) {
            proptest::prop_assert_eq!(split(&text, drop), split_words_by_chars(&text, drop));
        }
    }

    #[test]
    fn diacritics_and_stopwords() {
        let a = listing(1, "Perceuse électrique", |l| l.description = "Une perceuse de la marque Bosch".into());
        let b = listing(2, "Große Straße map", |_| {});
        let index = SearchIndex::build([a.clone(), b.clone()], T0);
        for q in ["electrique", "ÉLECTRIQUE", "électrique", "perceuse electrique", "the perceuse", "la perceuse"] {
            assert_eq!(run(&index, text(q)), [a.id()], "{q}");
        }
        assert_eq!(run(&index, text("grosse strasse")), [b.id()]);
        assert_eq!(index.search(&text("le de la"), T0).unwrap_err(), QueryError::NoSearchableWords);
        assert_eq!(index.search(&text("the "), T0).unwrap_err(), QueryError::NoSearchableWords);
        // A lone stopword still being typed is a prefix: "per" is not one, "ma" is (for "marque").
        assert_eq!(run(&index, text("ma")), [b.id(), a.id()]);
        assert_eq!(run(&index, text("per")), [a.id()]);
        // Stopwords in a listing are not indexed.
        assert!(index.vocab.get("de").is_none() && index.vocab.get("une").is_none());
    }

    #[test]
    fn each_filter() {
        let a = listing(1, "Drill", |l| {
            l.tags = vec!["power-tools".into()];
        });
        let b = listing(2, "Drill", |l| {
            l.kind = Kind::Give;
            l.community = "lyon".into();
        });
        let c = listing(3, "Drill", |l| {
            l.kind = Kind::Want;
            l.category = Category::Household;
        });
        let d = sign(&who(2), T0 + 400, body(4, "Drill"));
        let index = SearchIndex::build([a.clone(), b.clone(), c.clone(), d.clone()], T0);
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = text("drill");
            f(&mut q);
            run(&index, q)
        };
        assert_eq!(q(&|q| q.kinds = vec![Kind::Give, Kind::Want]), [c.id(), b.id()]);
        assert_eq!(q(&|q| q.kinds = vec![Kind::Lend]), [d.id(), a.id()]);
        assert_eq!(q(&|q| q.category = Some(Category::Household)), [c.id()]);
        assert_eq!(q(&|q| q.tag = Some("power-tools".into())), [a.id()]);
        assert!(q(&|q| q.tag = Some("unknown".into())).is_empty());
        assert_eq!(q(&|q| q.community = Some("lyon".into())), [b.id()]);
        assert!(q(&|q| q.community = Some("nowhere".into())).is_empty());
        assert_eq!(q(&|q| q.author = Some(*who(2).public())), [d.id()]);
        assert!(q(&|q| q.author = Some(*who(3).public())).is_empty());
        // Without text: the same filters, newest first.
        let mut q = Query { community: Some("paris-11".into()), ..Query::default() };
        assert_eq!(run(&index, q.clone()), [d.id(), c.id(), a.id()]);
        q.author = Some(*who(1).public());
        assert_eq!(run(&index, q.clone()), [c.id(), a.id()]);
        q.tag = Some("power-tools".into());
        assert_eq!(run(&index, q), [a.id()]);
    }

    #[test]
    fn expiry() {
        let a = listing(1, "Ladder", |l| l.valid_until = T0 + 1000);
        let b = listing(2, "Ladder", |_| {});
        let mut index = SearchIndex::build([a.clone(), b.clone()], T0);
        assert_eq!(run(&index, text("ladder")).len(), 2);
        assert_eq!(ids(&index.search(&text("ladder"), T0 + 1000).unwrap()), [b.id()]);
        assert_eq!(index.remove_expired(T0 + 999), 0);
        assert_eq!(index.remove_expired(T0 + 1000), 1);
        assert_eq!(index.len(), 1);
        assert_eq!(run(&index, text("ladder")), [b.id()]);
        // build leaves out what is already expired.
        assert_eq!(SearchIndex::build([a, b], T0 + 2000).len(), 1);
    }

    // Paris (Hôtel de Ville), Paris 11e (~3 km east), Versailles (~17 km), London (~340 km).
    fn places() -> [(u8, &'static str, (f64, f64)); 4] {
        [
            (1, "paris", (48.8566, 2.3522)),
            (2, "paris 11", (48.8590, 2.3800)),
            (3, "versailles", (48.8049, 2.1204)),
            (4, "london", (51.5074, -0.1278)),
        ]
    }

    fn located() -> (SearchIndex, Vec<Signed<Listing>>) {
        let mut all: Vec<Signed<Listing>> = places()
            .iter()
            .map(|&(k, name, (lat, lon))| {
                listing(k, &format!("Tent in {name}"), |l| l.location = geohash::encode(lat, lon, 6))
            })
            .collect();
        all.push(listing(5, "Tent somewhere", |_| {}));
        (SearchIndex::build(all.clone(), T0), all)
    }

    #[test]
    fn distance_filter_and_sort() {
        let (index, all) = located();
        let near = |within: Option<f64>| text("tent").near_position(48.8566, 2.3522, within);
        // The distance filter keeps what is within (relevance order: the shorter title first).
        assert_eq!(run(&index, near(Some(5.0))), [all[0].id(), all[1].id()]);
        assert_eq!(run(&index, near(Some(25.0))).len(), 3);
        assert_eq!(run(&index, near(Some(500.0))).len(), 4);
        // Distance sort without a radius: nearest first, the listing without a location last.
        let mut q = near(None);
        q.sort = Some(Sort::Distance);
        let r = index.search(&q, T0).unwrap();
        assert_eq!(ids(&r), all.iter().map(|l| l.id()).collect::<Vec<_>>());
        let d: Vec<Option<f64>> = r.hits.iter().map(|h| h.distance_km).collect();
        assert!(d[0].unwrap() < 1.0, "{d:?}");
        assert!((1.0..4.0).contains(&d[1].unwrap()), "{d:?}");
        assert!((14.0..22.0).contains(&d[2].unwrap()), "{d:?}");
        assert!((335.0..350.0).contains(&d[3].unwrap()), "{d:?}");
        assert_eq!(d[4], None);
        assert_eq!(r.hits[0].rough_distance().as_deref(), Some("< 1 km"));
        assert_eq!(r.hits[3].rough_distance().as_deref(), Some("about 340 km"));
        // Distances are rounded to 0.1 km.
        assert!(d.iter().flatten().all(|x| (x * 10.0 - (x * 10.0).round()).abs() < 1e-9));
        // Without text, and from London.
        let q = Query { sort: Some(Sort::Distance), limit: 2, ..Query::default() }.near_position(51.5, -0.12, None);
        // (Versailles is west of Paris: nearer to London.)
        assert_eq!(run(&index, q), [all[3].id(), all[2].id()]);
    }

    #[test]
    fn relevance_newest_and_expiring_orders() {
        let title = listing(1, "Drill", |l| l.description = "Works well with all the bits you need.".into());
        let desc = listing(2, "Toolbox", |l| l.description = "Has a drill and all the bits you need.".into());
        let tag = listing(3, "Toolbox", |l| {
            l.description = "Works well with all the bits you need.".into();
            l.tags = vec!["drill".into()];
            l.valid_until = T0 + 2 * DAY;
        });
        let index = SearchIndex::build([title.clone(), desc.clone(), tag.clone()], T0);
        let r = index.search(&text("drill"), T0).unwrap();
        assert_eq!(ids(&r), [title.id(), tag.id(), desc.id()]);
        assert!(r.hits[0].score > r.hits[1].score && r.hits[1].score > r.hits[2].score && r.hits[2].score > 0.0);
        let mut q = text("drill");
        q.sort = Some(Sort::Newest);
        assert_eq!(run(&index, q.clone()), [tag.id(), desc.id(), title.id()]);
        q.sort = Some(Sort::Expiring);
        assert_eq!(run(&index, q), [tag.id(), desc.id(), title.id()]);
        // Without text the default is newest, every score 0.
        let r = index.search(&Query::default(), T0).unwrap();
        assert_eq!(ids(&r), [tag.id(), desc.id(), title.id()]);
        assert!(r.hits.iter().all(|h| h.score == 0.0));
    }

    #[test]
    fn paging() {
        let all: Vec<_> = (1..=30).map(|k| listing(k, "Chair", |_| {})).collect();
        let index = SearchIndex::build(all.clone(), T0);
        let newest: Vec<RecordId> = all.iter().rev().map(|l| l.id()).collect();
        let r = index.search(&Query { limit: 7, offset: 5, ..Query::default() }, T0).unwrap();
        assert_eq!(r.total, 30);
        assert_eq!(ids(&r), newest[5..12]);
        let r = index.search(&Query { limit: 10, offset: 25, ..text("chair") }, T0).unwrap();
        assert_eq!(ids(&r), newest[25..]);
        assert!(index.search(&Query { offset: 40, ..Query::default() }, T0).unwrap().hits.is_empty());
    }

    #[test]
    fn upsert_replaces_an_older_revision() {
        let v1 = listing(1, "Red bicycle", |_| {});
        let v2 = listing(1, "Blue scooter", |l| l.revision = 2);
        let mut index = SearchIndex::build([v1.clone()], T0);
        assert!(index.upsert(&v2));
        assert_eq!(index.len(), 1);
        assert!(run(&index, text("bicycle")).is_empty());
        assert_eq!(run(&index, text("scooter")), [v2.id()]);
        // An older or the same revision changes nothing.
        assert!(!index.upsert(&v1));
        assert!(!index.upsert(&v2));
        assert!(index.contains(&v2.id()) && !index.contains(&v1.id()));
        assert_eq!(run(&index, Query::default()), [v2.id()]);
        // The same key by another author is another address.
        let other = sign(&who(2), T0, body(1, "Red bicycle"));
        assert!(index.upsert(&other));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn removals_and_compaction() {
        let all: Vec<_> = (1..=40).map(|k| listing(k, &format!("Lamp number{k}"), |_| {})).collect();
        let mut index = SearchIndex::build(all.clone(), T0);
        assert!(index.remove_address(all[0].author(), &all[0].body().key));
        assert!(!index.remove_address(all[0].author(), &all[0].body().key));
        assert!(!index.remove_address(who(9).public(), &all[1].body().key));
        assert!(index.remove_id(&all[1].id()));
        assert!(!index.remove_id(&all[1].id()));
        assert_eq!(index.len(), 38);
        assert!(run(&index, text("number1 ")).is_empty());
        for l in &all[2..20] {
            index.remove_id(&l.id());
        }
        let queries = [text("lamp"), text("number3"), Query { limit: 50, ..Query::default() }, text("number2")];
        let before: Vec<_> = queries.iter().map(|q| index.search(q, T0).unwrap()).collect();
        let words_before = index.word_count();
        index.compact();
        assert_eq!(index.hot.len(), 20);
        assert!(index.word_count() < words_before);
        let after: Vec<_> = queries.iter().map(|q| index.search(q, T0).unwrap()).collect();
        // The same results (scores move a little: dead postings no longer count in word frequencies).
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((b.total, ids(b)), (a.total, ids(a)));
        }
        // Still updatable after renumbering.
        assert!(index.remove_address(all[39].author(), &all[39].body().key));
        assert!(index.upsert(&all[0]));
        assert_eq!(run(&index, text("number1 ")), [all[0].id()]);
    }

    /// splitmix64: a small seeded generator for the property test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[self.below(v.len())]
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    const WORDS: &[&str] = &[
        "drill",
        "drills",
        "driller",
        "saw",
        "ladder",
        "tent",
        "bike",
        "bicycle",
        "électrique",
        "perceuse",
        "lamp",
        "table",
        "chair",
        "garden",
        "hose",
        "mower",
        "book",
        "guitar",
        "pump",
        "tools",
    ];
    const TAGS: &[&str] = &["power-tools", "outdoor", "kids", "music"];
    const COMMUNITIES: &[&str] = &["paris-11", "lyon", "lille"];
    const CELLS: &[&str] = &["u09tvw", "u09tvq", "u09whr", "u09w5b", "gcpvj0", "u05kqb", ""];

    fn random_listing(rng: &mut Rng, n: u8, authors: &[Identity]) -> Signed<Listing> {
        let words = |rng: &mut Rng, k: usize| (0..k).map(|_| *rng.pick(WORDS)).collect::<Vec<_>>().join(" ");
        let mut l = body(n, "x");
        let k = 1 + rng.below(3);
        l.title = words(rng, k);
        let k = rng.below(5);
        l.description = words(rng, k);
        l.kind = *rng.pick(&[Kind::Lend, Kind::Give, Kind::Want, Kind::Share]);
        l.category = *rng.pick(&[Category::Tools, Category::Garden, Category::Music]);
        l.community = rng.pick(COMMUNITIES).to_string();
        l.location = rng.pick(CELLS).to_string();
        let mut tags: Vec<String> = TAGS.iter().filter(|_| rng.chance(25)).map(|t| t.to_string()).collect();
        tags.dedup();
        l.tags = tags;
        let created = T0 - 10 * DAY + rng.below(1000) as u64 * 60;
        l.valid_until = created + DAY * (1 + rng.below(20) as u64);
        sign(rng.pick(authors), created, l)
    }

    fn random_query(rng: &mut Rng, authors: &[Identity]) -> Query {
        let mut q = Query { limit: MAX_LIMIT, ..Query::default() };
        if rng.chance(70) {
            let k = 1 + rng.below(2);
            let mut t: Vec<String> = (0..k).map(|_| rng.pick(WORDS).to_string()).collect();
            if rng.chance(30) {
                // A prefix of the last word.
                let last = t.pop().unwrap_or_default();
                let cut: String = last.chars().take(3 + rng.below(3)).collect();
                t.push(cut);
            }
            q.text = t.join(" ");
            if rng.chance(20) {
                q.text.push(' ');
            }
        }
        if rng.chance(30) {
            q.kinds = (0..1 + rng.below(2)).map(|_| *rng.pick(Kind::ALL)).collect();
        }
        if rng.chance(20) {
            q.category = Some(*rng.pick(&[Category::Tools, Category::Garden, Category::Music]));
        }
        if rng.chance(15) {
            q.tag = Some(rng.pick(TAGS).to_string());
        }
        if rng.chance(20) {
            q.community = Some(rng.pick(COMMUNITIES).to_string());
        }
        if rng.chance(15) {
            q.author = Some(*rng.pick(authors).public());
        }
        if rng.chance(40) {
            q.near = Some(rng.pick(&CELLS[..6]).to_string());
            if rng.chance(70) {
                q.within_km = Some(*rng.pick(&[0.5, 2.0, 5.0, 20.0, 500.0, 20_000.0]));
            } else {
                q.sort = Some(Sort::Distance);
            }
        }
        if q.sort.is_none() && rng.chance(30) {
            q.sort = Some(*rng.pick(&[Sort::Newest, Sort::Expiring]));
        }
        q
    }

    /// `matches` agrees with `search` on random queries over a small index, with dead slots in it.
    #[test]
    fn matches_agrees_with_search() {
        let mut rng = Rng(7);
        let authors: Vec<Identity> = (1..=4).map(who).collect();
        let all: Vec<_> = (0..80).map(|n| random_listing(&mut rng, n, &authors)).collect();
        let now = T0;
        let mut index = SearchIndex::build(all.clone(), now);
        // Withdraw a few, so the index has dead slots.
        let mut removed = HashSet::new();
        for l in all.iter().step_by(7) {
            index.remove_id(&l.id());
            removed.insert(l.id());
        }
        let live: Vec<_> = all.iter().filter(|l| !removed.contains(&l.id()) && index.contains(&l.id())).collect();
        let mut nonempty = 0;
        for i in 0..400 {
            let q = random_query(&mut rng, &authors);
            let p = q.prepare().unwrap_or_else(|e| panic!("query {i} {q:?}: {e}"));
            let r = index.search_prepared(&p, now);
            let got: HashSet<RecordId> = r.hits.iter().map(|h| h.id).collect();
            let want: HashSet<RecordId> = live.iter().filter(|l| p.matches(l, now)).map(|l| l.id()).collect();
            assert_eq!(got, want, "query {i}: {q:?}");
            assert_eq!(r.total, want.len());
            assert_eq!(matches(&q, live[0], now), Ok(want.contains(&live[0].id())));
            nonempty += usize::from(!want.is_empty() && want.len() < live.len());
        }
        // The queries are not all trivial.
        assert!(nonempty > 100, "{nonempty}");
    }

    #[test]
    fn query_validation() {
        let err = |q: Query| q.prepare().unwrap_err();
        assert_eq!(err(text(&"drill ".repeat(40))), QueryError::TextTooLong { len: 240, max: 200 });
        assert_eq!(err(text(&"ab ".repeat(11))), QueryError::TooManyWords { count: 11, max: 10 });
        assert_eq!(err(text("the a")), QueryError::NoSearchableWords);
        assert_eq!(err(text("the, ")), QueryError::NoSearchableWords);
        assert!(text("the").prepare().is_ok());
        assert_eq!(err(Query { limit: 0, ..Query::default() }), QueryError::LimitOutOfRange(0));
        assert_eq!(err(Query { limit: 201, ..Query::default() }), QueryError::LimitOutOfRange(201));
        assert_eq!(err(Query { offset: 10_001, ..Query::default() }), QueryError::OffsetTooLarge(10_001));
        let near = |g: &str, w: Option<f64>| Query { near: Some(g.into()), within_km: w, ..Query::default() };
        assert_eq!(err(near("u09tvwq", Some(1.0))), QueryError::InvalidNear("u09tvwq".into()));
        assert_eq!(err(near("u09a", Some(1.0))), QueryError::InvalidNear("u09a".into()));
        assert_eq!(err(near("", Some(1.0))), QueryError::InvalidNear("".into()));
        assert_eq!(err(near("u09", Some(0.0))), QueryError::WithinOutOfRange(0.0));
        assert_eq!(err(near("u09", Some(20_001.0))), QueryError::WithinOutOfRange(20_001.0));
        assert!(matches!(err(near("u09", Some(f64::NAN))), QueryError::WithinOutOfRange(_)));
        assert_eq!(err(near("u09", None)), QueryError::NearUnused);
        assert_eq!(err(Query { within_km: Some(3.0), ..Query::default() }), QueryError::WithinWithoutNear);
        assert_eq!(err(Query { sort: Some(Sort::Distance), ..Query::default() }), QueryError::DistanceSortWithoutNear);
        assert_eq!(err(Query { sort: Some(Sort::Relevance), ..Query::default() }), QueryError::RelevanceWithoutText);
        assert_eq!(
            err(Query { tag: Some("Power Tools".into()), ..Query::default() }),
            QueryError::InvalidTag("Power Tools".into())
        );
        assert_eq!(
            err(Query { community: Some("-x".into()), ..Query::default() }),
            QueryError::InvalidCommunity("-x".into())
        );
        assert_eq!("closest".parse::<Sort>().unwrap_err(), QueryError::UnknownSort("closest".into()));
        assert_eq!("expiring".parse::<Sort>(), Ok(Sort::Expiring));
        // Valid edge cases.
        assert!(near("u09", Some(20_000.0)).prepare().is_ok());
        assert!(Query { sort: Some(Sort::Distance), ..near("u", None) }.prepare().is_ok());
        assert!(text(&"ab ".repeat(10)).prepare().is_ok());
        assert!(Query { limit: 200, offset: 10_000, ..Query::default() }.prepare().is_ok());
        assert_eq!(Query::default().prepare().unwrap().sort(), Sort::Newest);
        assert_eq!(text("x drill").prepare().unwrap().sort(), Sort::Relevance);
    }

    #[test]
    fn query_serde() {
        let q = Query {
            kinds: vec![Kind::Lend, Kind::Share],
            category: Some(Category::Tools),
            tag: Some("power-tools".into()),
            sort: Some(Sort::Distance),
            author: Some(*who(1).public()),
            ..text("drill")
        }
        .near_position(48.8566, 2.3522, Some(5.0));
        let json = serde_json::to_string(&q).unwrap();
        assert!(json.contains(r#""near":"u09tvw""#) && json.contains(r#""sort":"distance""#), "{json}");
        let back: Query = serde_json::from_str(&json).unwrap();
        assert_eq!(back, q);
        // Every field may be left out; unknown fields are refused.
        let q: Query = serde_json::from_str(r#"{"text":"tent"}"#).unwrap();
        assert_eq!(q, text("tent"));
        assert!(serde_json::from_str::<Query>(r#"{"text":"tent","radius":5}"#).is_err());
    }

    #[test]
    fn rough_distances() {
        let cases = [
            (0.0, "< 1 km"),
            (0.99, "< 1 km"),
            (1.2, "about 1 km"),
            (2.4, "about 2 km"),
            (9.6, "about 10 km"),
            (14.0, "about 15 km"),
            (47.0, "about 45 km"),
            (343.5, "about 340 km"),
            (1234.0, "about 1250 km"),
            (9_876.0, "about 9900 km"),
            (-3.0, "< 1 km"),
            (f64::NAN, "unknown distance"),
            (f64::INFINITY, "about 20000 km"),
        ];
        for (km, want) in cases {
            assert_eq!(rough_distance(km), want, "{km}");
        }
    }

    #[test]
    fn memory_estimate_is_plausible() {
        let all: Vec<_> = (1..=50).map(|k| listing(k, "Garden hose, 25 m", |_| {})).collect();
        let index = SearchIndex::build(all, T0);
        let per = index.memory_bytes() / index.len();
        assert!((100..5000).contains(&per), "{per}");
    }
}
