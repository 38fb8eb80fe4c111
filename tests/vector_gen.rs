//! The generator of `docs/test-vectors.json`, the golden vectors of the record format.
//!
//! Everything is fixed (seeds, the clock, listing keys, nonces), so the output is the same on every
//! machine and every run; ed25519 signatures are deterministic (RFC 8032).
//!
//! Valid vectors are signed through the crate's public API ([`Signed::sign`],
//! [`PartiallySigned::countersign`]). Invalid vectors are built by hand from the specification with
//! [`Writer`] and signed with ed25519-dalek directly, because the crate refuses to sign what it would
//! refuse to accept: every invalid vector that tests a rule other than the signature carries a valid
//! signature over its (invalid) content, so that the rule, not the signature, is what rejects it.
//! The hand encoder is checked against the crate's encoder on the valid listings and profiles.
//!
//! Regenerate with `cargo test -p troc-tests --test integration vectors::regenerate -- --ignored`.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use troc_protocol::codec::Writer;
use troc_protocol::*;

/// The `created_at` of every vector (2023-11-14T22:13:20Z).
pub const CREATED_AT: u64 = 1_700_000_000;
const DAY: u64 = 24 * 3600;

/// The fixed identities: the seed is the RFC 8032 secret key.
pub const ALICE: [u8; 32] = [1; 32];
pub const BOB: [u8; 32] = [2; 32];
pub const CAROL: [u8; 32] = [3; 32];

const PEOPLE: [(&str, [u8; 32]); 3] = [("alice", ALICE), ("bob", BOB), ("carol", CAROL)];

/// Listing keys and nonces: fixed bytes standing for the random ones a node would choose.
const fn seq16(start: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = start + i as u8;
        i += 1;
    }
    out
}
const KEY_DRILL: [u8; 16] = seq16(0x10);
const KEY_NOVELS: [u8; 16] = seq16(0x20);
const KEY_BIKES: [u8; 16] = seq16(0x30);
const KEY_TENT: [u8; 16] = seq16(0x40);
const KEY_PLOT: [u8; 16] = seq16(0x50);
const KEY_COAT: [u8; 16] = seq16(0x60);
const KEY_LADDER: [u8; 16] = seq16(0x70);
const NONCE_BOB: [u8; 16] = seq16(0xa0);
const NONCE_ALICE: [u8; 16] = seq16(0xb0);

/// Encodings of points that are not valid public keys, for the key vectors.
const Y2_NOT_ON_CURVE: &str = "0200000000000000000000000000000000000000000000000000000000000000";
/// y = p + 1: a non-canonical encoding of the identity point.
const NON_CANONICAL_IDENTITY: &str = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
/// The identity point (0, 1) with the sign bit set: non-canonical (x = 0 has no negative).
const IDENTITY_SIGN_BIT: &str = "0100000000000000000000000000000000000000000000000000000000000080";
/// The identity point (0, 1): order 1.
const IDENTITY: &str = "0100000000000000000000000000000000000000000000000000000000000000";
/// (0, -1): order 2.
const ORDER_2: &str = "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
/// (sqrt(-1), 0): order 4.
const ORDER_4: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A point of order 8.
const ORDER_8: &str = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05";

/// The whole vector file.
#[derive(Debug, Serialize)]
pub struct TestVectors {
    pub format_version: u32,
    pub description: String,
    pub created_at: u64,
    pub keys: Vec<KeyInfo>,
    pub valid: Vec<ValidVector>,
    pub invalid: Vec<InvalidVector>,
}

/// A fixed identity.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub name: String,
    /// The 32-byte RFC 8032 secret key, hex.
    pub seed: String,
    /// The 32-byte public key, hex.
    pub public_key: String,
    /// The libp2p PeerId, base58btc.
    pub peer_id: String,
    /// The short display form (characters 8..16 of the PeerId).
    pub short: String,
}

/// A record every implementation must accept, and must produce byte for byte from its body.
#[derive(Debug, Serialize)]
pub struct ValidVector {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub record_type: String,
    /// In signature order: the author first, then (co-signed types) the counterparty.
    pub signers: Vec<KeyInfo>,
    pub created_at: u64,
    /// A time at which the record is valid.
    pub now: u64,
    /// The body's JSON (the `body` of the JSON view).
    pub body: Value,
    pub content_hex: String,
    /// Domain prefix, then content: what every signature covers and what the id hashes.
    pub signed_message_hex: String,
    pub id: String,
    pub signatures: Vec<String>,
    /// Co-signed types: content and the author's signature, as sent to the counterparty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partially_signed_hex: Option<String>,
    pub bytes_hex: String,
}

/// Bytes every implementation must refuse, with the code troc refuses them with.
#[derive(Debug, Serialize)]
pub struct InvalidVector {
    pub name: String,
    pub description: String,
    pub bytes_hex: String,
    pub now: u64,
    pub code: String,
}

const DESCRIPTION: &str = "Golden test vectors of troc's record format, version 1 (see docs/protocol.md). \
Every valid vector must be produced byte for byte from its body, signer seeds and created_at, and accepted \
(decoded, checked at `now`, signatures verified with verify_strict semantics) with the given id. Every \
invalid vector must be refused; `code` is the rejection code troc gives, which is the first failing check in \
the order of docs/protocol.md (decode: size, header, body fields in order, signature count, stateless rules; \
then the clock rules at `now`; then the signatures). Unless its description says otherwise, an invalid \
vector carries valid signatures over its (invalid) content, so the rule named by its code is what rejects \
it. One code of RecordError::CODES has no vector: author_mismatch is not reachable from bytes alone (it \
compares a record's author with an expected peer or party, which is context). Generated by \
tests/vector_gen.rs; regenerate with \
`cargo test -p troc-tests --test integration vectors::regenerate -- --ignored`.";

// ---------------------------------------------------------------------------------------------
// Keys and signing by hand

fn identity(seed: &[u8; 32]) -> Identity {
    Identity::from_seed(seed)
}

fn public(seed: &[u8; 32]) -> PublicKey {
    *identity(seed).public()
}

fn pk(seed: &[u8; 32]) -> [u8; 32] {
    *public(seed).as_bytes()
}

fn key_info(seed: &[u8; 32]) -> KeyInfo {
    let name = PEOPLE.iter().find(|(_, s)| s == seed).map(|(n, _)| *n).expect("a fixed identity");
    let p = public(seed);
    KeyInfo {
        name: name.to_owned(),
        seed: hex::encode(seed),
        public_key: hex::encode(p.as_bytes()),
        peer_id: p.to_peer_id().to_base58(),
        short: p.short(),
    }
}

fn unhex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).expect("32 bytes of hex");
    out
}

fn sign_message(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(seed).sign(message).to_bytes()
}

/// `content` followed by the signatures of `signers` over the type's domain prefix and `content`.
fn signed(t: RecordType, content: Vec<u8>, signers: &[&[u8; 32]]) -> Vec<u8> {
    let message = signed_message(t, &content);
    let mut out = content;
    for s in signers {
        out.extend_from_slice(&sign_message(s, &message));
    }
    out
}

/// `content` followed by a signature over an arbitrary prefix and `content` (unknown versions and
/// types, whose prefix this implementation does not know).
fn signed_with_prefix(prefix: &str, content: Vec<u8>, seed: &[u8; 32]) -> Vec<u8> {
    let mut message = prefix.as_bytes().to_vec();
    message.push(0);
    message.extend_from_slice(&content);
    let mut out = content;
    out.extend_from_slice(&sign_message(seed, &message));
    out
}

fn h512(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    let wide: [u8; 64] = h.finalize().into();
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// A signature whose R is the identity point and S = k·a: it satisfies the cofactorless equation
/// [S]B = R + [k]A exactly, and only verify_strict's "R not of small order" rule refuses it.
fn sign_small_order_r(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    let sk = SigningKey::from_bytes(seed);
    let r = unhex32(IDENTITY);
    let k = h512(&[&r, sk.verifying_key().as_bytes(), message]);
    let s = k * sk.to_scalar();
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(s.as_bytes());
    out
}

/// A signature whose R has a torsion component: R = [r]B + T with T of order 8, S = r + k·a. The
/// cofactored equation holds, the cofactorless one (verify_strict) does not.
fn sign_mixed_order_r(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    let sk = SigningKey::from_bytes(seed);
    let r = h512(&[b"troc test vector nonce", seed, message]);
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1]).compress();
    let k = h512(&[big_r.as_bytes(), sk.verifying_key().as_bytes(), message]);
    let s = r + k * sk.to_scalar();
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(big_r.as_bytes());
    out[32..].copy_from_slice(s.as_bytes());
    out
}

/// The group order L, little-endian.
const ORDER_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The same signature with S replaced by S + L (a non-canonical scalar for the same value mod L).
fn add_l_to_s(sig: &mut [u8]) {
    let mut carry = 0u16;
    for i in 0..32 {
        let v = sig[32 + i] as u16 + ORDER_L[i] as u16 + carry;
        sig[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 256 bits");
}

// ---------------------------------------------------------------------------------------------
// Encoding by hand, from the specification

fn header(w: &mut Writer, version: u8, type_code: u8, author: &[u8; 32], created_at: u64) {
    w.u8(version);
    w.u8(type_code);
    w.raw(author);
    w.u64(created_at);
}

fn content_start(t: RecordType, author: &[u8; 32]) -> Writer {
    let mut w = Writer::new();
    header(&mut w, 1, t.code(), author, CREATED_AT);
    w
}

/// Text as raw bytes (which need not be UTF-8): u16 length, bytes.
fn text_bytes(w: &mut Writer, b: &[u8]) {
    w.u16(u16::try_from(b.len()).expect("short text"));
    w.raw(b);
}

#[derive(Debug, Clone)]
struct RawProfile {
    name: Vec<u8>,
    community: String,
    area: String,
    about: String,
    contact: String,
}

impl RawProfile {
    fn new(name: &str) -> Self {
        RawProfile {
            name: name.as_bytes().to_vec(),
            community: String::new(),
            area: String::new(),
            about: String::new(),
            contact: String::new(),
        }
    }

    fn content(&self, author: &[u8; 32]) -> Vec<u8> {
        let mut w = content_start(RecordType::Profile, author);
        text_bytes(&mut w, &self.name);
        w.text(&self.community);
        w.text(&self.area);
        w.text(&self.about);
        w.text(&self.contact);
        w.into_bytes()
    }

    fn signed(&self, seed: &[u8; 32]) -> Vec<u8> {
        signed(RecordType::Profile, self.content(&pk(seed)), &[seed])
    }
}

#[derive(Debug, Clone)]
struct RawListing {
    key: [u8; 16],
    revision: u32,
    kind: u8,
    category: u8,
    title: String,
    description: String,
    tags: Vec<String>,
    max_loan_days: Option<u16>,
    deposit: Option<(u32, [u8; 3])>,
    conditions: String,
    availability: String,
    in_return: String,
    hours: Option<u16>,
    community: String,
    location: String,
    available_from: Option<u64>,
    available_until: Option<u64>,
    valid_until: u64,
}

impl RawListing {
    /// The minimal valid listing: a give, with a title, a community and a validity.
    fn base() -> Self {
        RawListing {
            key: KEY_NOVELS,
            revision: 1,
            kind: Kind::Give.code(),
            category: Category::Books.code(),
            title: "Box of novels".into(),
            description: String::new(),
            tags: Vec::new(),
            max_loan_days: None,
            deposit: None,
            conditions: String::new(),
            availability: String::new(),
            in_return: String::new(),
            hours: None,
            community: "north-end".into(),
            location: String::new(),
            available_from: None,
            available_until: None,
            valid_until: CREATED_AT + 30 * DAY,
        }
    }

    fn kind(mut self, k: Kind) -> Self {
        self.kind = k.code();
        self
    }

    fn category(mut self, c: Category) -> Self {
        self.category = c.code();
        self
    }

    fn content(&self, author: &[u8; 32]) -> Vec<u8> {
        let mut w = content_start(RecordType::Listing, author);
        w.raw(&self.key);
        w.u32(self.revision);
        w.u8(self.kind);
        w.u8(self.category);
        w.text(&self.title);
        w.text(&self.description);
        w.u8(u8::try_from(self.tags.len()).expect("few tags"));
        for t in &self.tags {
            w.text(t);
        }
        w.option(&self.max_loan_days, |w, v| w.u16(*v));
        w.option(&self.deposit, |w, (amount, currency)| {
            w.u32(*amount);
            w.raw(currency);
        });
        w.text(&self.conditions);
        w.text(&self.availability);
        w.text(&self.in_return);
        w.option(&self.hours, |w, v| w.u16(*v));
        w.text(&self.community);
        w.text(&self.location);
        w.option(&self.available_from, |w, v| w.u64(*v));
        w.option(&self.available_until, |w, v| w.u64(*v));
        w.u64(self.valid_until);
        w.into_bytes()
    }

    /// Where the max_loan_days option tag is in the content.
    fn max_loan_days_tag_offset(&self) -> usize {
        42 + 16
            + 4
            + 1
            + 1
            + 2
            + self.title.len()
            + 2
            + self.description.len()
            + 1
            + self.tags.iter().map(|t| 2 + t.len()).sum::<usize>()
    }

    fn signed(&self, seed: &[u8; 32]) -> Vec<u8> {
        signed(RecordType::Listing, self.content(&pk(seed)), &[seed])
    }
}

/// Content of the fixed-layout bodies, by hand.
fn proposal_content(
    author: &[u8; 32],
    counterparty: &[u8; 32],
    listing_author: &[u8; 32],
    revision: u32,
    kind: Kind,
    start: u64,
    end: Option<u64>,
) -> Vec<u8> {
    let mut w = content_start(RecordType::Proposal, author);
    w.raw(counterparty);
    w.raw(listing_author);
    w.raw(&KEY_DRILL);
    w.u32(revision);
    w.u8(kind.code());
    w.u64(start);
    w.option(&end, |w, v| w.u64(*v));
    w.text("Could I borrow it?");
    w.text("");
    w.u8(0);
    w.into_bytes()
}

fn agreement_content(
    author: &[u8; 32],
    counterparty: &[u8; 32],
    proposal: &RecordId,
    kind: Kind,
    start: u64,
    due: Option<u64>,
) -> Vec<u8> {
    let mut w = content_start(RecordType::Agreement, author);
    w.raw(counterparty);
    w.raw(proposal.as_bytes());
    w.raw(author);
    w.raw(&KEY_DRILL);
    w.u8(kind.code());
    w.u64(start);
    w.option(&due, |w, v| w.u64(*v));
    w.into_bytes()
}

fn vouch_content(author: &[u8; 32], subject: &[u8; 32], context: &str, expires_at: u64) -> Vec<u8> {
    let mut w = content_start(RecordType::Vouch, author);
    w.raw(subject);
    w.text(context);
    w.u64(expires_at);
    w.into_bytes()
}

fn review_content(
    author: &[u8; 32],
    agreement: &RecordId,
    subject: &[u8; 32],
    rating: u8,
    facets: &[(u8, u8)],
    text: &str,
) -> Vec<u8> {
    let mut w = content_start(RecordType::Review, author);
    w.raw(agreement.as_bytes());
    w.raw(subject);
    w.u8(rating);
    w.u8(u8::try_from(facets.len()).expect("few facets"));
    for (f, r) in facets {
        w.u8(*f);
        w.u8(*r);
    }
    w.text(text);
    w.raw(&NONCE_BOB);
    w.into_bytes()
}

fn deal_step_content(t: RecordType, author: &[u8; 32], agreement: &RecordId, note: &str) -> Vec<u8> {
    let mut w = content_start(t, author);
    w.raw(agreement.as_bytes());
    w.text(note);
    w.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The generator

struct Gen {
    valid: Vec<ValidVector>,
    invalid: Vec<InvalidVector>,
}

impl Gen {
    fn push_valid<T: RecordBody>(
        &mut self,
        name: &str,
        description: &str,
        signers: &[&[u8; 32]],
        rec: &Signed<T>,
        partial: Option<Vec<u8>>,
        now: u64,
    ) {
        let t = rec.record_type();
        let message = signed_message(t, rec.content());
        // Cross-checks of the crate against the specification, so that a vector cannot pin a bug.
        assert_eq!(rec.id().0, <[u8; 32]>::from(Sha256::digest(&message)), "{name}: id is SHA-256 of the message");
        assert_eq!(rec.signatures().count(), signers.len(), "{name}: signature count");
        for (sig, seed) in rec.signatures().zip(signers) {
            let sig = ed25519_dalek::Signature::from_slice(sig).expect("64 bytes");
            SigningKey::from_bytes(seed).verifying_key().verify(&message, &sig).expect("signature verifies");
        }
        SignedRecord::from_bytes(rec.bytes(), now).unwrap_or_else(|e| panic!("{name} is refused: {e}"));
        let body = serde_json::to_value(rec.body().clone().into_body()).expect("bodies serialize");
        self.valid.push(ValidVector {
            name: name.to_owned(),
            description: description.to_owned(),
            record_type: t.name().to_owned(),
            signers: signers.iter().map(|s| key_info(s)).collect(),
            created_at: rec.created_at(),
            now,
            body,
            content_hex: hex::encode(rec.content()),
            signed_message_hex: hex::encode(&message),
            id: rec.id().to_string(),
            signatures: rec.signatures().map(hex::encode).collect(),
            partially_signed_hex: partial.map(hex::encode),
            bytes_hex: hex::encode(rec.bytes()),
        });
    }

    fn sign<T: RecordBody>(&mut self, name: &str, description: &str, seed: &[u8; 32], body: T) -> Signed<T> {
        self.sign_at(name, description, seed, CREATED_AT, CREATED_AT, body)
    }

    fn sign_at<T: RecordBody>(
        &mut self,
        name: &str,
        description: &str,
        seed: &[u8; 32],
        created_at: u64,
        now: u64,
        body: T,
    ) -> Signed<T> {
        let rec = Signed::sign(&identity(seed), created_at, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        self.push_valid(name, description, &[seed], &rec, None, now);
        rec
    }

    fn cosign<T: RecordBody>(
        &mut self,
        name: &str,
        description: &str,
        author: &[u8; 32],
        counterparty: &[u8; 32],
        body: T,
    ) -> Signed<T> {
        let partial =
            PartiallySigned::sign(&identity(author), CREATED_AT, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let partial_bytes = partial.to_bytes();
        let rec = partial.countersign(&identity(counterparty)).unwrap_or_else(|e| panic!("{name}: {e}"));
        self.push_valid(name, description, &[author, counterparty], &rec, Some(partial_bytes), CREATED_AT);
        rec
    }

    fn invalid(&mut self, name: &str, code: &str, description: &str, bytes: Vec<u8>) {
        self.invalid_at(name, code, description, bytes, CREATED_AT);
    }

    fn invalid_at(&mut self, name: &str, code: &str, description: &str, bytes: Vec<u8>, now: u64) {
        assert!(RecordError::CODES.contains(&code), "{name}: unknown code {code}");
        assert!(!self.invalid.iter().any(|v| v.name == name), "duplicate vector name {name}");
        self.invalid.push(InvalidVector {
            name: name.to_owned(),
            description: description.to_owned(),
            bytes_hex: hex::encode(bytes),
            now,
            code: code.to_owned(),
        });
    }
}

fn listing(raw: &RawListing) -> Listing {
    Listing {
        key: ListingKey(raw.key),
        revision: raw.revision,
        kind: Kind::from_code(raw.kind).expect("a valid kind"),
        category: Category::from_code(raw.category).expect("a valid category"),
        title: raw.title.clone(),
        description: raw.description.clone(),
        tags: raw.tags.clone(),
        terms: Terms {
            max_loan_days: raw.max_loan_days,
            deposit: raw.deposit.map(|(amount_minor, c)| Money { amount_minor, currency: Currency(c) }),
            conditions: raw.conditions.clone(),
            availability: raw.availability.clone(),
            in_return: raw.in_return.clone(),
            hours: raw.hours,
        },
        community: raw.community.clone(),
        location: raw.location.clone(),
        available_from: raw.available_from,
        available_until: raw.available_until,
        valid_until: raw.valid_until,
    }
}

/// Signs a listing through the crate and checks the hand encoder produces the same content.
fn valid_listing(g: &mut Gen, name: &str, description: &str, seed: &[u8; 32], raw: &RawListing, now: u64) -> Signed {
    let rec = g.sign_at(name, description, seed, CREATED_AT, now, listing(raw)).into_any();
    assert_eq!(rec.content(), raw.content(&pk(seed)), "{name}: hand encoder and crate disagree");
    rec
}

/// Builds every vector.
pub fn test_vectors() -> TestVectors {
    let mut g = Gen { valid: Vec::new(), invalid: Vec::new() };
    let (alice, bob, carol) = (&ALICE, &BOB, &CAROL);

    // --- Valid: profiles ------------------------------------------------------------------------
    let profile_min = g.sign(
        "profile_minimal",
        "A profile with only a name; the other four text fields are empty.",
        alice,
        Profile {
            name: "Alice".into(),
            community: String::new(),
            area: String::new(),
            about: String::new(),
            contact: String::new(),
        },
    );
    assert_eq!(profile_min.content(), RawProfile::new("Alice").content(&pk(alice)));
    let full_profile = Profile {
        name: "Alice Martín".into(),
        community: "north-end".into(),
        area: "u09tvw".into(),
        about: "Bricoleuse.\nJ'aime le jardin \u{1f331}\tet les vélos.".into(),
        contact: "alice@example.org".into(),
    };
    let profile_full = g.sign(
        "profile_full",
        "Every profile field set: non-ASCII text, a newline and a tab in `about` (multi-line), a 6-character area.",
        alice,
        full_profile.clone(),
    );
    let raw_full = RawProfile {
        name: full_profile.name.as_bytes().to_vec(),
        community: full_profile.community.clone(),
        area: full_profile.area.clone(),
        about: full_profile.about.clone(),
        contact: full_profile.contact.clone(),
    };
    assert_eq!(profile_full.content(), raw_full.content(&pk(alice)));
    g.sign(
        "profile_limits",
        "Fields exactly at their byte limits: a 64-byte name of 32 two-byte characters, a 64-byte \
         community slug, a 1000-byte about and a 200-byte contact.",
        bob,
        Profile {
            name: "é".repeat(32),
            community: format!("{}-b", "a".repeat(62)),
            area: "u".into(),
            about: "ab\n".repeat(333) + "z",
            contact: "c".repeat(200),
        },
    );
    g.sign_at(
        "profile_clock_skew_boundary",
        "created_at is exactly 600 s (the allowed clock skew) ahead of now: accepted.",
        carol,
        CREATED_AT + 600,
        CREATED_AT,
        Profile {
            name: "Carol".into(),
            community: "south-bank".into(),
            area: "gcpvj".into(),
            about: String::new(),
            contact: String::new(),
        },
    );

    // --- Valid: listings ------------------------------------------------------------------------
    let novels = RawListing::base();
    valid_listing(
        &mut g,
        "listing_minimal",
        "The smallest listing: a give with a title, a community and a validity; no option set.",
        alice,
        &novels,
        CREATED_AT,
    );
    let drill = RawListing {
        key: KEY_DRILL,
        revision: 3,
        kind: Kind::Lend.code(),
        category: Category::Tools.code(),
        title: "Cordless drill".into(),
        description: "18 V, two batteries.\nBits included.".into(),
        tags: vec!["drill".into(), "diy".into()],
        max_loan_days: Some(7),
        deposit: Some((2000, *b"EUR")),
        conditions: "Return it clean.".into(),
        availability: "Weekends".into(),
        in_return: String::new(),
        hours: None,
        community: "north-end".into(),
        location: "u09tvw".into(),
        available_from: Some(CREATED_AT),
        available_until: Some(CREATED_AT + 90 * DAY),
        valid_until: CREATED_AT + 180 * DAY,
    };
    valid_listing(
        &mut g,
        "listing_lend_full",
        "A lend with every field a lend may use: description, tags, max_loan_days, deposit, conditions, \
         availability, location, available_from and available_until. valid_until is the longest allowed \
         (180 days after created_at) and `now` is one second before it. The worked example of docs/protocol.md.",
        alice,
        &drill,
        CREATED_AT + 180 * DAY - 1,
    );
    let all_options = RawListing {
        key: KEY_LADDER,
        revision: 1,
        kind: Kind::Lend.code(),
        category: Category::Help.code(),
        title: "Ladder, and a hand to hold it".into(),
        description: String::new(),
        tags: vec!["ladder".into()],
        max_loan_days: Some(1),
        deposit: Some((0, *b"GBP")),
        conditions: "Outdoor use only.\nNo roofs.".into(),
        availability: "Saturdays".into(),
        in_return: String::new(),
        hours: Some(2),
        community: "south-bank".into(),
        location: "gcpvj0".into(),
        available_from: Some(CREATED_AT + DAY),
        available_until: Some(CREATED_AT + DAY),
        valid_until: CREATED_AT + 7 * DAY,
    };
    valid_listing(
        &mut g,
        "listing_every_option_set",
        "All five optional fields present at once (max_loan_days, deposit, hours, available_from, \
         available_until), which only a lend in a service category allows; a zero deposit; \
         available_from equal to available_until.",
        carol,
        &all_options,
        CREATED_AT,
    );
    let bikes = RawListing {
        key: KEY_BIKES,
        title: "Bike repairs".into(),
        tags: vec!["bikes".into(), "repair-2".into()],
        in_return: "Help in my garden".into(),
        hours: Some(1000),
        location: "u09tv".into(),
        ..RawListing::base().kind(Kind::Barter).category(Category::Repair)
    };
    valid_listing(
        &mut g,
        "listing_barter_service",
        "A barter of a service: in_return and hours.",
        bob,
        &bikes,
        CREATED_AT,
    );
    let coat = RawListing {
        key: KEY_COAT,
        title: "Winter coat, size M".into(),
        in_return: "Hiking boots, size 40".into(),
        availability: "Evenings\tafter 6".into(),
        ..RawListing::base().kind(Kind::Swap).category(Category::Clothing)
    };
    valid_listing(
        &mut g,
        "listing_swap",
        "A swap: in_return is required; a tab in a one-line field.",
        bob,
        &coat,
        CREATED_AT,
    );
    let plot = RawListing {
        key: KEY_PLOT,
        title: "Allotment plot, Tuesday mornings".into(),
        deposit: Some((500, *b"GBP")),
        community: "south-bank".into(),
        ..RawListing::base().kind(Kind::Share).category(Category::Garden)
    };
    valid_listing(&mut g, "listing_share", "A share with a deposit.", carol, &plot, CREATED_AT);
    let tent = RawListing {
        key: KEY_TENT,
        revision: u32::MAX,
        title: "Tent for a weekend".into(),
        max_loan_days: Some(365),
        community: "south-bank".into(),
        location: "gcpvj".into(),
        valid_until: CREATED_AT + 1,
        ..RawListing::base().kind(Kind::Want).category(Category::Camping)
    };
    valid_listing(
        &mut g,
        "listing_want",
        "A want with max_loan_days at its limit (365), the largest revision and a validity of one second.",
        carol,
        &tent,
        CREATED_AT,
    );

    // --- Valid: withdrawal ----------------------------------------------------------------------
    g.sign(
        "withdrawal",
        "Alice withdraws her listing_minimal (every revision of it, for good).",
        alice,
        Withdrawal { listing_author: public(alice), listing_key: ListingKey(KEY_NOVELS), reason: "Given away.".into() },
    );

    // --- Valid: a lend, end to end --------------------------------------------------------------
    let start = CREATED_AT + DAY;
    let due = CREATED_AT + 8 * DAY;
    let proposal = g.sign(
        "proposal",
        "Bob proposes to borrow Alice's drill (listing_lend_full, revision 3). Private: never gossiped.",
        bob,
        Proposal {
            counterparty: public(alice),
            listing_author: public(alice),
            listing_key: ListingKey(KEY_DRILL),
            listing_revision: 3,
            kind: Kind::Lend,
            start,
            end: Some(due + DAY),
            message: "Hi Alice,\ncould I borrow it for a week?".into(),
            in_return: String::new(),
            supersedes: None,
        },
    );
    let counter = g.sign(
        "proposal_counter",
        "Alice counters Bob's proposal with a shorter loan: supersedes names the proposal it counters.",
        alice,
        Proposal {
            counterparty: public(bob),
            listing_author: public(alice),
            listing_key: ListingKey(KEY_DRILL),
            listing_revision: 3,
            kind: Kind::Lend,
            start,
            end: Some(due),
            message: "One week is fine, back by the 22nd?".into(),
            in_return: String::new(),
            supersedes: Some(proposal.id()),
        },
    );
    let agreement = g.cosign(
        "agreement",
        "The agreement on Alice's counter-proposal: authored and signed first by Alice, countersigned by Bob \
         (two signatures over the same message).",
        alice,
        bob,
        Agreement {
            counterparty: public(bob),
            proposal: counter.id(),
            listing_author: public(alice),
            listing_key: ListingKey(KEY_DRILL),
            kind: Kind::Lend,
            start,
            due: Some(due),
        },
    );
    let handover = g.sign(
        "handover",
        "Alice hands the drill over.",
        alice,
        Handover { agreement: agreement.id(), note: "With the case.".into() },
    );
    g.sign(
        "acknowledgement",
        "Bob acknowledges the handover, as expected.",
        bob,
        Acknowledgement {
            agreement: agreement.id(),
            subject: handover.id(),
            condition: Condition::AsExpected,
            note: String::new(),
        },
    );
    let extension = g.cosign(
        "extension",
        "Bob asks for three more days and Alice agrees: co-signed, Bob first.",
        bob,
        alice,
        Extension { agreement: agreement.id(), counterparty: public(alice), new_due: due + 3 * DAY },
    );
    let ret = g.sign(
        "return",
        "Bob returns the drill.",
        bob,
        Return { agreement: agreement.id(), note: format!("Thanks! (after extension {})", extension.id().short()) },
    );
    g.sign(
        "acknowledgement_damaged",
        "Alice acknowledges the return: one battery is damaged.",
        alice,
        Acknowledgement {
            agreement: agreement.id(),
            subject: ret.id(),
            condition: Condition::Damaged,
            note: "One battery no longer charges.".into(),
        },
    );
    g.sign(
        "completion",
        "Alice marks the deal done.",
        alice,
        Completion { agreement: agreement.id(), note: String::new() },
    );
    g.sign(
        "review",
        "Bob reviews Alice: an overall rating, three facets and a text; the nonce makes the id unguessable.",
        bob,
        Review {
            agreement: agreement.id(),
            subject: public(alice),
            rating: Rating::Positive,
            facets: vec![
                FacetRating { facet: Facet::Communication, rating: Rating::Positive },
                FacetRating { facet: Facet::AsDescribed, rating: Rating::Positive },
                FacetRating { facet: Facet::Punctuality, rating: Rating::Neutral },
            ],
            text: "Great drill, friendly lender.".into(),
            nonce: Nonce(NONCE_BOB),
        },
    );
    let hidden = g.sign(
        "review_hidden",
        "Alice's review of Bob, kept hidden at first: review_commitment commits to its id.",
        alice,
        Review {
            agreement: agreement.id(),
            subject: public(bob),
            rating: Rating::Negative,
            facets: vec![FacetRating { facet: Facet::Care, rating: Rating::Negative }],
            text: String::new(),
            nonce: Nonce(NONCE_ALICE),
        },
    );
    g.sign(
        "review_commitment",
        "Alice commits to review_hidden by its id, before revealing it.",
        alice,
        ReviewCommitment { agreement: agreement.id(), subject: public(bob), review: hidden.id() },
    );

    // --- Valid: a declined barter proposal -------------------------------------------------------
    let barter = g.sign(
        "proposal_barter",
        "Carol proposes a barter for Bob's bike repairs (no end date, something in return).",
        carol,
        Proposal {
            counterparty: public(bob),
            listing_author: public(bob),
            listing_key: ListingKey(KEY_BIKES),
            listing_revision: 1,
            kind: Kind::Barter,
            start,
            end: None,
            message: String::new(),
            in_return: "Two hours of gardening".into(),
            supersedes: None,
        },
    );
    g.sign(
        "cancellation",
        "Bob declines Carol's proposal.",
        bob,
        Cancellation { deal: barter.id(), reason: CancelReason::Declined, note: "Booked until spring, sorry.".into() },
    );

    // --- Valid: vouch and revocation -------------------------------------------------------------
    let vouch = g.sign(
        "vouch",
        "Carol vouches for Alice for one year.",
        carol,
        Vouch { subject: public(alice), context: "Neighbour for ten years".into(), expires_at: CREATED_AT + 365 * DAY },
    );
    g.sign(
        "revocation",
        "Carol revokes her own vouch.",
        carol,
        Revocation { target_author: public(carol), target: vouch.id(), reason: "Moved away.".into() },
    );

    invalid_vectors(&mut g, &profile_min, &agreement, &extension, &counter);

    // Every type has at least one valid vector.
    for t in RecordType::ALL {
        assert!(g.valid.iter().any(|v| v.record_type == t.name()), "no valid {t} vector");
    }
    TestVectors {
        format_version: 1,
        description: DESCRIPTION.to_owned(),
        created_at: CREATED_AT,
        keys: PEOPLE.iter().map(|(_, s)| key_info(s)).collect(),
        valid: g.valid,
        invalid: g.invalid,
    }
}

fn invalid_vectors(
    g: &mut Gen,
    profile: &Signed<Profile>,
    agreement: &Signed<Agreement>,
    extension: &Signed<Extension>,
    counter: &Signed<Proposal>,
) {
    let (alice, bob, carol) = (&ALICE, &BOB, &CAROL);
    let a = pk(alice);
    let profile_bytes = profile.bytes().to_vec();
    let profile_content = profile.content().to_vec();
    let base = RawListing::base();

    // --- Framing and size -----------------------------------------------------------------------
    g.invalid("empty", "malformed", "Zero bytes.", Vec::new());
    g.invalid(
        "short_header",
        "malformed",
        "10 bytes starting with version 1 and type 1 (profile): shorter than the 42-byte header.",
        vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    g.invalid(
        "short_unknown_version",
        "unknown_version",
        "Two bytes, version 2: a short record still reports its version first.",
        vec![2, 1],
    );
    g.invalid(
        "short_unknown_type",
        "unknown_type",
        "Two bytes, version 1 and type 16: a short record still reports its type.",
        vec![1, 16],
    );
    g.invalid("one_byte_version_1", "malformed", "The single byte 0x01.", vec![1]);
    let mut big = profile_bytes.clone();
    big.resize(16 * 1024 + 1, 0);
    g.invalid(
        "too_large",
        "too_large",
        "profile_minimal followed by zero bytes up to 16385 bytes: one over the limit, refused before anything else is read.",
        big,
    );
    let mut max = profile_bytes.clone();
    max.resize(16 * 1024, 0);
    g.invalid(
        "max_size_malformed",
        "malformed",
        "profile_minimal followed by zero bytes up to exactly 16384 bytes: not too large, but the bytes after \
         the content are not exactly one signature.",
        max,
    );
    let mut v = profile_bytes.clone();
    v.pop();
    g.invalid("truncated_signature", "malformed", "profile_minimal without its last byte.", v);
    let mut v = profile_bytes.clone();
    v.push(0);
    g.invalid("trailing_byte", "malformed", "profile_minimal with one extra byte after the signature.", v);
    let mut v = profile_bytes.clone();
    v.extend_from_slice(&profile_bytes[profile_content.len()..]);
    g.invalid(
        "extra_signature",
        "malformed",
        "profile_minimal with its signature twice: more signatures than the type has.",
        v,
    );
    let content = base.content(&a);
    g.invalid(
        "truncated_content",
        "malformed",
        "A listing's content cut in the middle of its title, with no signature.",
        content[..42 + 16 + 4 + 2 + 2 + 3].to_vec(),
    );
    let mut content = base.content(&a);
    let at = base.max_loan_days_tag_offset();
    assert_eq!(content[at], 0);
    content[at] = 2;
    g.invalid(
        "bad_option_tag",
        "malformed",
        "listing_minimal with the max_loan_days option tag set to 0x02 (only 0x00 and 0x01 exist), validly signed.",
        signed(RecordType::Listing, content, &[alice]),
    );
    for (name, bytes, what) in [
        ("invalid_utf8", &b"Al\xffce"[..], "a 0xff byte"),
        ("utf8_surrogate", &b"Al\xed\xa0\x80ce"[..], "an encoded surrogate (ED A0 80)"),
        ("utf8_overlong", &b"Al\xc0\xafce"[..], "an overlong encoding (C0 AF)"),
    ] {
        let raw = RawProfile { name: bytes.to_vec(), ..RawProfile::new("") };
        g.invalid(
            name,
            "malformed",
            &format!("A profile whose name has {what}: not UTF-8. Validly signed."),
            raw.signed(alice),
        );
    }

    // --- Version and type -----------------------------------------------------------------------
    for version in [0u8, 2] {
        let mut content = profile_content.clone();
        content[0] = version;
        g.invalid(
            &format!("unknown_version_{version}"),
            "unknown_version",
            &format!("profile_minimal with version byte {version}, signed under the prefix troc/v{version}/profile."),
            signed_with_prefix(&format!("troc/v{version}/profile"), content, alice),
        );
    }
    for t in [0u8, 16, 255] {
        let mut content = profile_content.clone();
        content[1] = t;
        g.invalid(
            &format!("unknown_type_{t}"),
            "unknown_type",
            &format!("profile_minimal with type byte {t}, signed under the prefix troc/v1/{t}."),
            signed_with_prefix(&format!("troc/v1/{t}"), content, alice),
        );
    }

    // --- Keys -----------------------------------------------------------------------------------
    let with_author = |author: &str| {
        let mut content = profile_content.clone();
        content[2..34].copy_from_slice(&unhex32(author));
        content.extend_from_slice(&profile_bytes[profile_content.len()..]);
        content
    };
    g.invalid(
        "author_not_on_curve",
        "invalid_key",
        "A profile whose author is y = 2, which is not the y coordinate of a curve point (signature: Alice's, never checked).",
        with_author(Y2_NOT_ON_CURVE),
    );
    g.invalid(
        "author_non_canonical",
        "invalid_key",
        "A profile whose author is y = p + 1, a non-canonical encoding of the identity point: invalid_key, \
         because the canonical-encoding check comes before the small-order check.",
        with_author(NON_CANONICAL_IDENTITY),
    );
    g.invalid(
        "author_identity_sign_bit",
        "invalid_key",
        "A profile whose author is the identity point with the sign bit set (x = 0 cannot be negative): non-canonical.",
        with_author(IDENTITY_SIGN_BIT),
    );
    for (name, key, what) in [
        ("author_identity", IDENTITY, "the identity point (order 1)"),
        ("author_order_2", ORDER_2, "(0, -1), of order 2"),
        ("author_order_4", ORDER_4, "(sqrt(-1), 0), of order 4"),
        ("author_order_8", ORDER_8, "a point of order 8"),
    ] {
        g.invalid(name, "weak_key", &format!("A profile whose author is {what}: a weak key."), with_author(key));
    }
    let mut w = content_start(RecordType::Proposal, &a);
    w.raw(&unhex32(Y2_NOT_ON_CURVE));
    let mut content = w.into_bytes();
    content.extend_from_slice(&proposal_content(&a, &pk(bob), &a, 3, Kind::Lend, CREATED_AT + DAY, None)[74..]);
    g.invalid(
        "proposal_counterparty_not_on_curve",
        "invalid_key",
        "A proposal by Alice whose counterparty is not a curve point, validly signed.",
        signed(RecordType::Proposal, content, &[alice]),
    );
    g.invalid(
        "vouch_subject_weak",
        "weak_key",
        "A vouch by Carol for a key of order 4, validly signed.",
        signed(RecordType::Vouch, vouch_content(&pk(carol), &unhex32(ORDER_4), "Friend", CREATED_AT + DAY), &[carol]),
    );

    // --- Signatures -----------------------------------------------------------------------------
    let sig_at = profile_content.len();
    let mut v = profile_bytes.clone();
    v[sig_at] ^= 0x01;
    g.invalid("signature_bit_flip", "bad_signature", "profile_minimal with the lowest bit of R flipped.", v);
    let mut v = profile_bytes.clone();
    v[sig_at + 40] ^= 0x80;
    g.invalid("signature_s_bit_flip", "bad_signature", "profile_minimal with one bit of S flipped.", v);
    g.invalid(
        "signature_by_another_key",
        "bad_signature",
        "Alice's profile_minimal content with a valid signature by Bob over it.",
        signed(RecordType::Profile, profile_content.clone(), &[bob]),
    );
    let mut v = profile_content.clone();
    v.extend_from_slice(&sign_message(alice, &profile_content));
    g.invalid(
        "signature_without_prefix",
        "bad_signature",
        "profile_minimal signed by Alice over the content alone, without the domain prefix.",
        v,
    );
    let mut v = profile_content.clone();
    v.extend_from_slice(&sign_message(alice, &signed_message(RecordType::Listing, &profile_content)));
    g.invalid(
        "signature_other_type_prefix",
        "bad_signature",
        "profile_minimal signed by Alice under the listing prefix (troc/v1/listing).",
        v,
    );
    let mut v = profile_bytes.clone();
    add_l_to_s(&mut v[sig_at..]);
    g.invalid(
        "signature_s_not_canonical",
        "bad_signature",
        "profile_minimal with S replaced by S + L: the same scalar mod L, but not the canonical encoding.",
        v,
    );
    let message = signed_message(RecordType::Profile, &profile_content);
    let mut v = profile_content.clone();
    v.extend_from_slice(&sign_small_order_r(alice, &message));
    g.invalid(
        "signature_small_order_r",
        "bad_signature",
        "profile_minimal with R = the identity point and S = k·a: the cofactorless equation holds, but R is of \
         small order, which verify_strict refuses (many ed25519 libraries accept it).",
        v,
    );
    let mut v = profile_content.clone();
    v.extend_from_slice(&sign_mixed_order_r(alice, &message));
    g.invalid(
        "signature_mixed_order_r",
        "bad_signature",
        "profile_minimal with R = [r]B + T, T of order 8, S = r + k·a: the cofactored equation holds, the \
         cofactorless one does not (see Batch verification in docs/protocol.md).",
        v,
    );
    let mut v = agreement.bytes().to_vec();
    let second = agreement.content().len() + 64;
    v[second + 5] ^= 0x10;
    g.invalid(
        "agreement_bad_countersignature",
        "bad_signature",
        "The agreement vector with one bit of the counterparty's signature flipped.",
        v,
    );
    let mut v = agreement.content().to_vec();
    let sigs: Vec<&[u8]> = agreement.signatures().collect();
    v.extend_from_slice(sigs[1]);
    v.extend_from_slice(sigs[0]);
    g.invalid(
        "agreement_signatures_swapped",
        "bad_signature",
        "The agreement vector with its two signatures in the wrong order (counterparty first).",
        v,
    );

    // --- Signature count ------------------------------------------------------------------------
    g.invalid("unsigned", "missing_signature", "profile_minimal's content with no signature.", profile_content.clone());
    g.invalid(
        "agreement_partially_signed",
        "missing_signature",
        "The agreement vector with only its author's signature (its partially signed form).",
        agreement.bytes()[..agreement.content().len() + 64].to_vec(),
    );
    g.invalid(
        "extension_unsigned",
        "missing_signature",
        "The extension vector's content with no signature.",
        extension.content().to_vec(),
    );
    let self_agreement =
        agreement_content(&a, &a, &counter.id(), Kind::Lend, CREATED_AT + DAY, Some(CREATED_AT + 2 * DAY));
    let message = signed_message(RecordType::Agreement, &self_agreement);
    let mut v = self_agreement.clone();
    v.extend_from_slice(&sign_message(alice, &message));
    g.invalid(
        "order_signature_count_before_rules",
        "missing_signature",
        "An agreement of Alice with herself carrying one signature: the signature count is checked before \
         the body's rules (self_reference).",
        v,
    );

    // --- Own records ----------------------------------------------------------------------------
    let mut w = content_start(RecordType::Withdrawal, &a);
    w.raw(&pk(bob));
    w.raw(&KEY_BIKES);
    w.text("");
    g.invalid(
        "withdrawal_of_others_listing",
        "not_own_record",
        "Alice withdraws Bob's listing, validly signed by Alice.",
        signed(RecordType::Withdrawal, w.into_bytes(), &[alice]),
    );
    let mut w = content_start(RecordType::Revocation, &a);
    w.raw(&pk(carol));
    w.raw(&[0x77; 32]);
    w.text("Not true");
    g.invalid(
        "revocation_of_others_record",
        "not_own_record",
        "Alice revokes a record of Carol's, validly signed by Alice.",
        signed(RecordType::Revocation, w.into_bytes(), &[alice]),
    );

    // --- Self references ------------------------------------------------------------------------
    g.invalid(
        "proposal_to_self",
        "self_reference",
        "A proposal whose counterparty is its author.",
        signed(RecordType::Proposal, proposal_content(&a, &a, &a, 3, Kind::Lend, CREATED_AT + DAY, None), &[alice]),
    );
    g.invalid(
        "agreement_with_self",
        "self_reference",
        "An agreement of Alice with herself, signed twice by Alice.",
        signed(RecordType::Agreement, self_agreement, &[alice, alice]),
    );
    g.invalid(
        "vouch_for_self",
        "self_reference",
        "Carol vouches for herself.",
        signed(RecordType::Vouch, vouch_content(&pk(carol), &pk(carol), "Me", CREATED_AT + DAY), &[carol]),
    );
    g.invalid(
        "review_of_self",
        "self_reference",
        "Bob reviews himself.",
        signed(
            RecordType::Review,
            review_content(&pk(bob), &agreement.id(), &pk(bob), Rating::Positive.code(), &[], ""),
            &[bob],
        ),
    );
    let mut w = content_start(RecordType::Extension, &pk(bob));
    w.raw(agreement.id().as_bytes());
    w.raw(&pk(bob));
    w.u64(CREATED_AT + 20 * DAY);
    g.invalid(
        "extension_with_self",
        "self_reference",
        "An extension whose counterparty is its author, signed twice by Bob.",
        signed(RecordType::Extension, w.into_bytes(), &[bob, bob]),
    );
    let mut w = content_start(RecordType::ReviewCommitment, &pk(bob));
    w.raw(agreement.id().as_bytes());
    w.raw(&pk(bob));
    w.raw(&[0x55; 32]);
    g.invalid(
        "review_commitment_to_self",
        "self_reference",
        "A review commitment whose subject is its author.",
        signed(RecordType::ReviewCommitment, w.into_bytes(), &[bob]),
    );

    // --- Clock ----------------------------------------------------------------------------------
    g.invalid_at(
        "from_future",
        "from_future",
        "profile_minimal checked 601 s before its created_at: more than the 600 s of allowed clock skew.",
        profile_bytes.clone(),
        CREATED_AT - 601,
    );
    g.invalid_at(
        "listing_expired",
        "expired",
        "listing_minimal checked at exactly its valid_until.",
        base.signed(alice),
        base.valid_until,
    );
    let vouch = signed(RecordType::Vouch, vouch_content(&pk(carol), &a, "Neighbour", CREATED_AT + 10 * DAY), &[carol]);
    g.invalid_at(
        "vouch_expired",
        "expired",
        "A vouch checked one second after its expires_at.",
        vouch,
        CREATED_AT + 10 * DAY + 1,
    );
    let mut v = profile_bytes.clone();
    v[sig_at] ^= 0x01;
    g.invalid_at(
        "order_clock_before_signature",
        "from_future",
        "profile_minimal with a broken signature, checked 601 s before its created_at: the clock is checked \
         before the signatures.",
        v,
        CREATED_AT - 601,
    );
    let raw = RawListing { revision: 0, ..base.clone() };
    g.invalid_at(
        "order_rules_before_clock",
        "invalid_value",
        "A listing with revision 0, checked after its valid_until: the stateless rules come before the clock.",
        raw.signed(alice),
        base.valid_until + 1,
    );

    // --- Field lengths --------------------------------------------------------------------------
    let listing = |name: &str, code: &str, description: &str, raw: RawListing| {
        (name.to_owned(), code.to_owned(), description.to_owned(), raw.signed(alice))
    };
    let mut cases = vec![
        listing(
            "listing_location_7_chars",
            "location_too_precise",
            "A listing whose location has 7 geohash characters (at most 6).",
            RawListing { location: "u09tvwq".into(), ..base.clone() },
        ),
        listing(
            "listing_title_121_bytes",
            "field_too_long",
            "A title of 121 ASCII bytes (the limit is 120).",
            RawListing { title: "t".repeat(121), ..base.clone() },
        ),
        listing(
            "listing_title_61_two_byte_chars",
            "field_too_long",
            "A title of 61 characters but 122 bytes (é is two bytes): limits count bytes.",
            RawListing { title: "é".repeat(61), ..base.clone() },
        ),
        listing(
            "listing_tag_33_bytes",
            "field_too_long",
            "A tag of 33 bytes (the limit is 32).",
            RawListing { tags: vec!["t".repeat(33)], ..base.clone() },
        ),
        listing(
            "listing_description_4001_bytes",
            "field_too_long",
            "A description of 4001 bytes.",
            RawListing { description: "d".repeat(4001), ..base.clone() },
        ),
        listing(
            "listing_in_return_501_bytes",
            "field_too_long",
            "A swap whose in_return is 501 bytes.",
            RawListing { in_return: "r".repeat(501), ..base.clone().kind(Kind::Swap) },
        ),
    ];
    // --- Empty and forbidden text ---------------------------------------------------------------
    cases.extend([
        listing(
            "listing_title_empty",
            "field_empty",
            "An empty title.",
            RawListing { title: String::new(), ..base.clone() },
        ),
        listing(
            "listing_title_whitespace",
            "field_empty",
            "A title of spaces and a tab only.",
            RawListing { title: "  \t ".into(), ..base.clone() },
        ),
        listing(
            "listing_community_empty",
            "field_empty",
            "A listing with no community (required).",
            RawListing { community: String::new(), ..base.clone() },
        ),
        listing(
            "listing_tag_empty",
            "field_empty",
            "An empty tag.",
            RawListing { tags: vec![String::new()], ..base.clone() },
        ),
        listing(
            "swap_without_in_return",
            "field_empty",
            "A swap with an empty in_return.",
            base.clone().kind(Kind::Swap),
        ),
        listing(
            "listing_title_newline",
            "forbidden_character",
            "A line feed in the title (a one-line field).",
            RawListing { title: "Box\nof novels".into(), ..base.clone() },
        ),
        listing(
            "listing_description_escape",
            "forbidden_character",
            "An ESC character (a terminal escape) in the description.",
            RawListing { description: "Nice \u{1b}[2J box".into(), ..base.clone() },
        ),
        listing(
            "listing_description_carriage_return",
            "forbidden_character",
            "A carriage return in the description: multi-line fields allow LF only.",
            RawListing { description: "Line one\r\nLine two".into(), ..base.clone() },
        ),
        listing(
            "listing_title_bidi_override",
            "forbidden_character",
            "A right-to-left override (U+202E) in the title.",
            RawListing { title: "Box of \u{202e}slevon".into(), ..base.clone() },
        ),
        listing(
            "listing_availability_del",
            "forbidden_character",
            "A DEL (U+007F) in availability.",
            RawListing { availability: "Weekends\u{7f}".into(), ..base.clone() },
        ),
        listing(
            "listing_conditions_isolate",
            "forbidden_character",
            "A first-strong isolate (U+2068) in conditions.",
            RawListing { conditions: "Be \u{2068}careful\u{2069}".into(), ..base.clone() },
        ),
        listing(
            "listing_13_tags",
            "too_many_items",
            "A listing with 13 tags (at most 12).",
            RawListing { tags: (0..13).map(|i| format!("tag-{i}")).collect(), ..base.clone() },
        ),
    ]);
    // --- Invalid values -------------------------------------------------------------------------
    let lend = base.clone().kind(Kind::Lend).category(Category::Tools);
    let service = base.clone().kind(Kind::Give).category(Category::Lessons);
    cases.extend([
        listing("listing_kind_0", "invalid_value", "Kind code 0.", RawListing { kind: 0, ..base.clone() }),
        listing("listing_kind_7", "invalid_value", "Kind code 7 (unknown).", RawListing { kind: 7, ..base.clone() }),
        listing(
            "listing_category_13",
            "invalid_value",
            "Category code 13 (a gap in the taxonomy).",
            RawListing { category: 13, ..base.clone() },
        ),
        listing(
            "listing_category_64",
            "invalid_value",
            "Category code 64 (unknown).",
            RawListing { category: 64, ..base.clone() },
        ),
        listing(
            "listing_revision_0",
            "invalid_value",
            "Revision 0 (revisions start at 1).",
            RawListing { revision: 0, ..base.clone() },
        ),
        listing(
            "listing_valid_until_before_created_at",
            "invalid_value",
            "valid_until one second before created_at.",
            RawListing { valid_until: CREATED_AT - 1, ..base.clone() },
        ),
        listing(
            "listing_valid_until_equals_created_at",
            "invalid_value",
            "valid_until equal to created_at (must be after).",
            RawListing { valid_until: CREATED_AT, ..base.clone() },
        ),
        listing(
            "listing_lifetime_over_180_days",
            "invalid_value",
            "valid_until 180 days and one second after created_at.",
            RawListing { valid_until: CREATED_AT + 180 * DAY + 1, ..base.clone() },
        ),
        listing(
            "listing_deposit_on_swap",
            "invalid_value",
            "A swap with a deposit (deposits are for lend and share only).",
            RawListing { deposit: Some((1000, *b"EUR")), in_return: "Boots".into(), ..base.clone().kind(Kind::Swap) },
        ),
        listing(
            "listing_deposit_lowercase_currency",
            "invalid_value",
            "A lend whose deposit currency is \"eur\" (must be three upper-case ASCII letters).",
            RawListing { deposit: Some((1000, *b"eur")), ..lend.clone() },
        ),
        listing(
            "listing_max_loan_days_on_give",
            "invalid_value",
            "A give with max_loan_days (lend and want only).",
            RawListing { max_loan_days: Some(7), ..base.clone() },
        ),
        listing(
            "listing_max_loan_days_0",
            "invalid_value",
            "A lend with max_loan_days 0.",
            RawListing { max_loan_days: Some(0), ..lend.clone() },
        ),
        listing(
            "listing_max_loan_days_366",
            "invalid_value",
            "A lend with max_loan_days 366.",
            RawListing { max_loan_days: Some(366), ..lend.clone() },
        ),
        listing(
            "listing_in_return_on_lend",
            "invalid_value",
            "A lend with in_return (swap, barter and want only).",
            RawListing { in_return: "Cake".into(), ..lend.clone() },
        ),
        listing(
            "listing_hours_on_thing",
            "invalid_value",
            "hours on a listing in a thing category (tools).",
            RawListing { hours: Some(2), ..lend.clone() },
        ),
        listing(
            "listing_hours_0",
            "invalid_value",
            "hours 0 on a service.",
            RawListing { hours: Some(0), ..service.clone() },
        ),
        listing(
            "listing_hours_1001",
            "invalid_value",
            "hours 1001 on a service.",
            RawListing { hours: Some(1001), ..service.clone() },
        ),
        listing(
            "listing_tag_not_slug",
            "invalid_value",
            "An upper-case tag.",
            RawListing { tags: vec!["DIY".into()], ..base.clone() },
        ),
        listing(
            "listing_tag_double_dash",
            "invalid_value",
            "A tag with a double dash.",
            RawListing { tags: vec!["a--b".into()], ..base.clone() },
        ),
        listing(
            "listing_tag_trailing_dash",
            "invalid_value",
            "A tag ending with a dash.",
            RawListing { tags: vec!["books-".into()], ..base.clone() },
        ),
        listing(
            "listing_duplicate_tag",
            "invalid_value",
            "The same tag twice.",
            RawListing { tags: vec!["books".into(), "novels".into(), "books".into()], ..base.clone() },
        ),
        listing(
            "listing_community_not_slug",
            "invalid_value",
            "A community with a space and upper case.",
            RawListing { community: "North End".into(), ..base.clone() },
        ),
        listing(
            "listing_location_bad_alphabet",
            "invalid_value",
            "A location with an 'a', which is not in the geohash alphabet.",
            RawListing { location: "u09a".into(), ..base.clone() },
        ),
        listing(
            "listing_location_upper_case",
            "invalid_value",
            "A location in upper case (the alphabet is lower case).",
            RawListing { location: "U09TV".into(), ..base.clone() },
        ),
        listing(
            "listing_available_until_before_from",
            "invalid_value",
            "available_until before available_from.",
            RawListing {
                available_from: Some(CREATED_AT + 2 * DAY),
                available_until: Some(CREATED_AT + DAY),
                ..base.clone()
            },
        ),
        listing(
            "order_first_failing_rule",
            "invalid_value",
            "A listing with revision 0 and an empty title: the revision rule comes first.",
            RawListing { revision: 0, title: String::new(), ..base.clone() },
        ),
        listing(
            "order_terms_before_community",
            "invalid_value",
            "A give with max_loan_days and an empty community: the terms are checked before the community.",
            RawListing { max_loan_days: Some(3), community: String::new(), ..base.clone() },
        ),
    ]);
    for (name, code, description, bytes) in cases {
        g.invalid(&name, &code, &description, bytes);
    }

    // Decoding stops at the first over-long length, before reading the bytes.
    let mut w = content_start(RecordType::Listing, &a);
    w.raw(&KEY_NOVELS);
    w.u32(1);
    w.u8(Kind::Give.code());
    w.u8(Category::Books.code());
    w.u16(121);
    w.raw(b"abc");
    g.invalid(
        "title_length_beyond_end",
        "field_too_long",
        "A listing cut after 3 bytes of a title whose length says 121: the length is checked against the \
         limit before the bytes are read, so this is field_too_long, not malformed. No signature.",
        w.into_bytes(),
    );
    let mut content = RawListing { location: "u09tvwq".into(), ..base.clone() }.content(&a);
    let at = content.len() - 8 - 1 - 1 - 7; // valid_until, two absent options, the 7 location bytes
    assert_eq!(&content[at - 2..at], &[0, 7], "the location's length");
    content[at - 1] = 12;
    content.truncate(at + 7);
    g.invalid(
        "location_length_beyond_end",
        "location_too_precise",
        "A listing cut after 7 bytes of a location whose length says 12: the length is checked against the \
         limit before the bytes are read, so this is location_too_precise, not malformed. No signature.",
        content,
    );
    let mut w = content_start(RecordType::Listing, &a);
    w.raw(&KEY_NOVELS);
    w.u32(1);
    w.u8(9);
    w.u8(200);
    g.invalid(
        "order_fields_in_wire_order",
        "invalid_value",
        "A listing cut after an unknown kind (9) and an unknown category (200): fields are decoded in \
         order, so the kind's invalid_value comes before the missing bytes. No signature.",
        w.into_bytes(),
    );
    let mut raw = RawListing { title: "t".repeat(121), ..base.clone() }.content(&a);
    raw.extend_from_slice(&[0u8; 64]);
    g.invalid(
        "order_decode_before_signature",
        "field_too_long",
        "A listing with a 121-byte title and a signature of zeros: decoding comes before the signatures.",
        raw,
    );

    // --- Profiles -------------------------------------------------------------------------------
    let profile_cases = [
        ("profile_name_65_bytes", "field_too_long", "A 65-byte name.", RawProfile::new(&"n".repeat(65))),
        (
            "profile_area_7_chars",
            "location_too_precise",
            "An area of 7 geohash characters (at most 6).",
            RawProfile { area: "u09tvwq".into(), ..RawProfile::new("Alice") },
        ),
        (
            "profile_area_4_two_byte_chars",
            "location_too_precise",
            "An area of 4 characters but 8 bytes (é is two bytes): the geohash limit is in bytes too.",
            RawProfile { area: "éééé".into(), ..RawProfile::new("Alice") },
        ),
        ("profile_name_empty", "field_empty", "An empty name.", RawProfile::new("")),
        (
            "profile_name_ideographic_space",
            "field_empty",
            "A name that is one ideographic space (U+3000), which is white space.",
            RawProfile::new("\u{3000}"),
        ),
        (
            "profile_name_nbsp",
            "field_empty",
            "A name of two no-break spaces (U+00A0), which are white space.",
            RawProfile::new("\u{a0}\u{a0}"),
        ),
        (
            "profile_contact_newline",
            "forbidden_character",
            "A line feed in contact (a one-line field).",
            RawProfile { contact: "a@b.c\nd@e.f".into(), ..RawProfile::new("Alice") },
        ),
        (
            "profile_about_nel",
            "forbidden_character",
            "A NEL (U+0085, a C1 control) in about.",
            RawProfile { about: "Hello\u{85}there".into(), ..RawProfile::new("Alice") },
        ),
        ("profile_name_nul", "forbidden_character", "A NUL character in the name.", RawProfile::new("Ali\u{0}ce")),
        (
            "profile_community_leading_dash",
            "invalid_value",
            "A community slug starting with a dash.",
            RawProfile { community: "-north".into(), ..RawProfile::new("Alice") },
        ),
        (
            "profile_community_non_ascii",
            "invalid_value",
            "A community slug with a non-ASCII letter.",
            RawProfile { community: "nörth".into(), ..RawProfile::new("Alice") },
        ),
        (
            "profile_area_bad_alphabet",
            "invalid_value",
            "An area with an 'i', which is not in the geohash alphabet.",
            RawProfile { area: "u09ti".into(), ..RawProfile::new("Alice") },
        ),
    ];
    for (name, code, description, raw) in profile_cases {
        g.invalid(name, code, description, raw.signed(alice));
    }

    // --- Deal records ---------------------------------------------------------------------------
    let b = pk(bob);
    let start = CREATED_AT + DAY;
    g.invalid(
        "proposal_listing_author_third_party",
        "invalid_value",
        "A proposal between Alice and Bob about Carol's listing.",
        signed(RecordType::Proposal, proposal_content(&a, &b, &pk(carol), 1, Kind::Lend, start, None), &[alice]),
    );
    g.invalid(
        "proposal_listing_revision_0",
        "invalid_value",
        "A proposal against revision 0.",
        signed(RecordType::Proposal, proposal_content(&b, &a, &a, 0, Kind::Lend, start, None), &[bob]),
    );
    g.invalid(
        "proposal_end_equals_start",
        "invalid_value",
        "A proposal whose end equals its start.",
        signed(RecordType::Proposal, proposal_content(&b, &a, &a, 1, Kind::Lend, start, Some(start)), &[bob]),
    );
    g.invalid("proposal_kind_unknown", "invalid_value", "A proposal with kind code 0.", {
        let mut c = proposal_content(&b, &a, &a, 1, Kind::Lend, start, None);
        let kind_at = 42 + 32 + 32 + 16 + 4;
        c[kind_at] = 0;
        signed(RecordType::Proposal, c, &[bob])
    });
    let mut w = content_start(RecordType::Proposal, &b);
    w.raw(&a);
    w.raw(&a);
    w.raw(&KEY_DRILL);
    w.u32(1);
    w.u8(Kind::Lend.code());
    w.u64(start);
    w.u8(0);
    w.text(&"m".repeat(2001));
    w.text("");
    w.u8(0);
    g.invalid(
        "proposal_message_2001_bytes",
        "field_too_long",
        "A proposal message of 2001 bytes.",
        signed(RecordType::Proposal, w.into_bytes(), &[bob]),
    );
    for (name, kind, due, what) in [
        ("agreement_lend_without_due", Kind::Lend, None, "A lend agreement without a due date."),
        ("agreement_due_on_give", Kind::Give, Some(start + DAY), "A give agreement with a due date."),
        ("agreement_due_equals_start", Kind::Share, Some(start), "A share agreement due at its start."),
    ] {
        g.invalid(
            name,
            "invalid_value",
            &format!("{what} Co-signed by Alice and Bob."),
            signed(RecordType::Agreement, agreement_content(&a, &b, &counter.id(), kind, start, due), &[alice, bob]),
        );
    }
    g.invalid(
        "handover_note_501_bytes",
        "field_too_long",
        "A handover note of 501 bytes.",
        signed(
            RecordType::Handover,
            deal_step_content(RecordType::Handover, &a, &agreement.id(), &"n".repeat(501)),
            &[alice],
        ),
    );
    g.invalid(
        "return_note_c1_control",
        "forbidden_character",
        "A return note with U+009B (CSI, a C1 control).",
        signed(RecordType::Return, deal_step_content(RecordType::Return, &b, &agreement.id(), "ok \u{9b}2J"), &[bob]),
    );
    g.invalid(
        "completion_note_bidi_isolate",
        "forbidden_character",
        "A completion note with U+2066 (left-to-right isolate).",
        signed(
            RecordType::Completion,
            deal_step_content(RecordType::Completion, &a, &agreement.id(), "done \u{2066}x"),
            &[alice],
        ),
    );
    let mut w = content_start(RecordType::Acknowledgement, &b);
    w.raw(agreement.id().as_bytes());
    w.raw(&[0x33; 32]);
    w.u8(0);
    w.text("");
    g.invalid(
        "acknowledgement_condition_0",
        "invalid_value",
        "An acknowledgement with condition code 0.",
        signed(RecordType::Acknowledgement, w.into_bytes(), &[bob]),
    );
    let mut w = content_start(RecordType::Cancellation, &b);
    w.raw(agreement.id().as_bytes());
    w.u8(6);
    w.text("");
    g.invalid(
        "cancellation_reason_6",
        "invalid_value",
        "A cancellation with reason code 6.",
        signed(RecordType::Cancellation, w.into_bytes(), &[bob]),
    );

    // --- Reviews and vouches --------------------------------------------------------------------
    let agr = agreement.id();
    let p = Rating::Positive.code();
    g.invalid(
        "review_7_facets",
        "too_many_items",
        "A review with 7 facets (at most 6).",
        signed(
            RecordType::Review,
            review_content(&b, &agr, &a, p, &[(1, p), (2, p), (3, p), (4, p), (5, p), (1, p), (2, p)], ""),
            &[bob],
        ),
    );
    g.invalid(
        "review_duplicate_facet",
        "invalid_value",
        "A review rating the same facet twice.",
        signed(RecordType::Review, review_content(&b, &agr, &a, p, &[(1, p), (1, 3)], ""), &[bob]),
    );
    g.invalid(
        "review_rating_4",
        "invalid_value",
        "A review with rating code 4.",
        signed(RecordType::Review, review_content(&b, &agr, &a, 4, &[], ""), &[bob]),
    );
    g.invalid(
        "review_facet_6",
        "invalid_value",
        "A review with facet code 6.",
        signed(RecordType::Review, review_content(&b, &agr, &a, p, &[(6, p)], ""), &[bob]),
    );
    g.invalid(
        "review_text_1001_bytes",
        "field_too_long",
        "A review text of 1001 bytes.",
        signed(RecordType::Review, review_content(&b, &agr, &a, p, &[], &"x".repeat(1001)), &[bob]),
    );
    let c = pk(carol);
    g.invalid(
        "vouch_context_empty",
        "field_empty",
        "A vouch with an empty context.",
        signed(RecordType::Vouch, vouch_content(&c, &a, "", CREATED_AT + DAY), &[carol]),
    );
    g.invalid(
        "vouch_context_201_bytes",
        "field_too_long",
        "A vouch context of 201 bytes.",
        signed(RecordType::Vouch, vouch_content(&c, &a, &"v".repeat(201), CREATED_AT + DAY), &[carol]),
    );
    g.invalid(
        "vouch_expires_at_created_at",
        "invalid_value",
        "A vouch expiring at its created_at.",
        signed(RecordType::Vouch, vouch_content(&c, &a, "Neighbour", CREATED_AT), &[carol]),
    );
    g.invalid(
        "vouch_lifetime_over_two_years",
        "invalid_value",
        "A vouch expiring two years (730 days) and one second after its created_at.",
        signed(RecordType::Vouch, vouch_content(&c, &a, "Neighbour", CREATED_AT + 730 * DAY + 1), &[carol]),
    );
    let mut w = content_start(RecordType::Withdrawal, &a);
    w.raw(&a);
    w.raw(&KEY_NOVELS);
    w.text("gone\u{1b}");
    g.invalid(
        "withdrawal_reason_escape",
        "forbidden_character",
        "A withdrawal whose reason has an ESC character.",
        signed(RecordType::Withdrawal, w.into_bytes(), &[alice]),
    );
}

/// The vector file as written to `docs/test-vectors.json`: pretty-printed, with a final newline.
pub fn test_vectors_json() -> String {
    let mut s = serde_json::to_string_pretty(&test_vectors()).expect("vectors serialize");
    s.push('\n');
    s
}
