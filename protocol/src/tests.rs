//! The protocol's unit and property tests: one test per rejection code, the signing / verification
//! pipeline, batch verification, co-signing, hostile input, and proptest round trips.
//!
//! Invalid records are built by hand (`forge*` below): the body is encoded without its rules being
//! checked and signed with a real key, so that the rule under test, not the signature, rejects it.

use ed25519_dalek::{Signer, SigningKey, Verifier};

use crate::body::{HEADER_LEN, sealed::Codec};
use crate::codec::Writer;
use crate::limits::*;
use crate::*;

/// The clock of every test: created_at of the sample records, and "now" when checking them.
const NOW: Timestamp = 1_700_000_000;
const DAY: u64 = 24 * 3600;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

fn alice() -> Identity {
    Identity::from_seed(&seed(1))
}

fn bob() -> Identity {
    Identity::from_seed(&seed(2))
}

fn carol() -> Identity {
    Identity::from_seed(&seed(3))
}

fn signing_key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&seed(n))
}

fn pk(id: &Identity) -> PublicKey {
    *id.public()
}

fn rid(n: u8) -> RecordId {
    RecordId([n; 32])
}

/// The identity point (0, 1): of small order.
fn small_order_point() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
}

/// y = 2 is not the y coordinate of any curve point.
fn off_curve_point() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 2;
    b
}

fn sample_profile() -> Profile {
    Profile {
        name: "Alice".into(),
        community: "north-end".into(),
        area: "u09tv".into(),
        about: "Retired carpenter.\nHappy to lend tools and to teach.".into(),
        contact: "alice@example.org".into(),
    }
}

/// A typical lend listing: about 500 bytes on the wire.
fn sample_listing() -> Listing {
    Listing {
        key: ListingKey([7; 16]),
        revision: 1,
        kind: Kind::Lend,
        category: Category::Tools,
        title: "Cordless drill (18 V) with two batteries".into(),
        description: "Bosch cordless drill with two 2 Ah batteries, a charger and a box of wood and metal \
                      bits. Works fine for shelves, flat-pack furniture and the odd hole in concrete. Please \
                      bring it back charged.\nI can show you how to use it."
            .into(),
        tags: vec!["drill".into(), "diy".into(), "power-tools".into()],
        terms: Terms {
            max_loan_days: Some(7),
            deposit: Some(Money { amount_minor: 2000, currency: Currency(*b"EUR") }),
            conditions: "Not for masonry drilling all day long; return clean.".into(),
            availability: "Weekends, and weekday evenings after 6".into(),
            in_return: String::new(),
            hours: None,
        },
        community: "north-end".into(),
        location: "u09tvw".into(),
        available_from: Some(NOW),
        available_until: Some(NOW + 90 * DAY),
        valid_until: NOW + 30 * DAY,
    }
}

fn sample_withdrawal() -> Withdrawal {
    Withdrawal { listing_author: pk(&alice()), listing_key: ListingKey([7; 16]), reason: "Sold it.".into() }
}

/// Bob proposes to borrow Alice's drill.
fn sample_proposal() -> Proposal {
    Proposal {
        counterparty: pk(&alice()),
        listing_author: pk(&alice()),
        listing_key: ListingKey([7; 16]),
        listing_revision: 1,
        kind: Kind::Lend,
        start: NOW + DAY,
        end: Some(NOW + 4 * DAY),
        message: "Hi! Could I borrow it for the weekend?".into(),
        in_return: String::new(),
        supersedes: None,
    }
}

/// Alice (author) and Bob (counterparty) agree on the loan.
fn sample_agreement() -> Agreement {
    Agreement {
        counterparty: pk(&bob()),
        proposal: rid(4),
        listing_author: pk(&alice()),
        listing_key: ListingKey([7; 16]),
        kind: Kind::Lend,
        start: NOW + DAY,
        due: Some(NOW + 4 * DAY),
    }
}

fn sample_extension() -> Extension {
    Extension { agreement: rid(5), counterparty: pk(&bob()), new_due: NOW + 8 * DAY }
}

fn sample_review() -> Review {
    Review {
        agreement: rid(5),
        subject: pk(&bob()),
        rating: Rating::Positive,
        facets: vec![
            FacetRating { facet: Facet::Care, rating: Rating::Positive },
            FacetRating { facet: Facet::Punctuality, rating: Rating::Neutral },
        ],
        text: "Brought it back clean and charged.".into(),
        nonce: Nonce([9; 16]),
    }
}

fn sample_vouch() -> Vouch {
    Vouch { subject: pk(&bob()), context: "Neighbour for ten years".into(), expires_at: NOW + 365 * DAY }
}

fn sample_revocation() -> Revocation {
    Revocation { target_author: pk(&alice()), target: rid(12), reason: "Wrote it in anger.".into() }
}

/// One valid body of every record type, with who signs it (author first) for co-signed types.
fn sample_bodies() -> Vec<(Body, Vec<u8>)> {
    vec![
        (Body::Profile(sample_profile()), vec![1]),
        (Body::Listing(sample_listing()), vec![1]),
        (Body::Withdrawal(sample_withdrawal()), vec![1]),
        (Body::Proposal(sample_proposal()), vec![2]),
        (Body::Agreement(sample_agreement()), vec![1, 2]),
        (Body::Handover(Handover { agreement: rid(5), note: "Here you go.".into() }), vec![1]),
        (Body::Return(Return { agreement: rid(5), note: String::new() }), vec![2]),
        (
            Body::Acknowledgement(Acknowledgement {
                agreement: rid(5),
                subject: rid(7),
                condition: Condition::AsExpected,
                note: "All good".into(),
            }),
            vec![1],
        ),
        (Body::Completion(Completion { agreement: rid(5), note: String::new() }), vec![1]),
        (
            Body::Cancellation(Cancellation { deal: rid(4), reason: CancelReason::Declined, note: "Sorry!".into() }),
            vec![1],
        ),
        (Body::Extension(sample_extension()), vec![1, 2]),
        (Body::Review(sample_review()), vec![1]),
        (Body::ReviewCommitment(ReviewCommitment { agreement: rid(5), subject: pk(&bob()), review: rid(11) }), vec![1]),
        (Body::Vouch(sample_vouch()), vec![1]),
        (Body::Revocation(sample_revocation()), vec![1]),
    ]
}

/// Signs any body through the public API: `Signed::sign`, or `PartiallySigned` for co-signed types.
fn sign_body(body: Body, signers: &[u8], created_at: Timestamp) -> SignedRecord {
    let author = Identity::from_seed(&seed(signers[0]));
    if body.record_type().signature_count() == 2 {
        let partial = PartiallySigned::sign(&author, created_at, body).unwrap();
        partial.countersign(&Identity::from_seed(&seed(signers[1]))).unwrap()
    } else {
        Signed::sign(&author, created_at, body).unwrap()
    }
}

/// Every sample record, signed, at NOW.
fn sample_records() -> Vec<SignedRecord> {
    sample_bodies().into_iter().map(|(b, s)| sign_body(b, &s, NOW)).collect()
}

fn signed_listing() -> SignedRecord {
    Signed::sign(&alice(), NOW, sample_listing()).unwrap().into_any()
}

// ---------------------------------------------------------------------------------------------
// Forging: valid signatures on content whose rules were never checked

/// Appends one signature per signer over the type's signed message.
fn sign_content(record_type: RecordType, content: &[u8], signers: &[u8]) -> Vec<u8> {
    let message = signed_message(record_type, content);
    let mut out = content.to_vec();
    for &s in signers {
        out.extend_from_slice(&signing_key(s).sign(&message).to_bytes());
    }
    out
}

/// Content with raw header fields (any version, type byte or author bytes) and a hand-written body.
fn raw_content(
    version: u8,
    type_code: u8,
    author: &[u8; 32],
    created_at: u64,
    body: impl FnOnce(&mut Writer),
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(version);
    w.u8(type_code);
    w.raw(author);
    w.u64(created_at);
    body(&mut w);
    w.into_bytes()
}

/// The content (header and body) of `body` by `author` at `created_at`, none of its rules checked.
fn forge_content<B: RecordBody>(body: &B, author: u8, created_at: Timestamp) -> Vec<u8> {
    let header = Header {
        version: FORMAT_VERSION,
        record_type: body.record_type(),
        author: *Identity::from_seed(&seed(author)).public(),
        created_at,
    };
    let mut w = Writer::new();
    header.encode(&mut w);
    body.encode(&mut w);
    w.into_bytes()
}

/// A body encoded without any of its rules checked, under a real header, signed by `signers`
/// (the first one is the author).
fn forge_at<B: RecordBody>(body: &B, signers: &[u8], created_at: Timestamp) -> Vec<u8> {
    sign_content(body.record_type(), &forge_content(body, signers[0], created_at), signers)
}

fn forge<B: RecordBody>(body: &B, signers: &[u8]) -> Vec<u8> {
    forge_at(body, signers, NOW)
}

/// The code `decode` gives (or "ok").
fn decode_code(bytes: &[u8]) -> &'static str {
    match decode(bytes) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// The code the full pipeline gives at NOW (or "ok").
fn full_code(bytes: &[u8]) -> &'static str {
    match SignedRecord::from_bytes(bytes, NOW) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// The code `Signed::sign` (or `PartiallySigned::sign`) gives for a body signed by `author` at NOW.
fn sign_code<B: RecordBody>(body: B, author: u8) -> &'static str {
    let id = Identity::from_seed(&seed(author));
    let result = if body.record_type().signature_count() == 2 {
        PartiallySigned::sign(&id, NOW, body).map(|_| ())
    } else {
        Signed::sign(&id, NOW, body).map(|_| ())
    };
    match result {
        Ok(()) => "ok",
        Err(e) => e.code(),
    }
}

/// Forges `body` as `author` (and the counterparty for co-signed types) and asserts that both
/// decoding the bytes and signing the body refuse it with `code`.
#[track_caller]
fn assert_rejected<B: RecordBody>(body: B, signers: &[u8], code: &str) {
    let bytes = forge(&body, signers);
    assert_eq!(decode_code(&bytes), code, "decode of {body:?}");
    assert_eq!(full_code(&bytes), code, "from_bytes of {body:?}");
    assert_eq!(sign_code(body.clone(), signers[0]), code, "sign of {body:?}");
}

// ---------------------------------------------------------------------------------------------
// The samples themselves

#[test]
fn every_sample_is_valid_and_round_trips() {
    let records = sample_records();
    assert_eq!(records.len(), RecordType::ALL.len());
    for (rec, t) in records.iter().zip(RecordType::ALL) {
        assert_eq!(rec.record_type(), *t);
        let back = SignedRecord::from_bytes(rec.bytes(), NOW).unwrap();
        assert_eq!(back.id(), rec.id());
        assert_eq!(back.body(), rec.body());
        assert_eq!(back.bytes(), rec.bytes());
        assert_eq!(back.signatures().count(), t.signature_count());
        // The forged (unchecked) encoding of a valid body is the same bytes.
        let signers: Vec<u8> = if t.signature_count() == 2 { vec![1, 2] } else { vec![rec_author_seed(rec)] };
        assert_eq!(forge(rec.body(), &signers), rec.bytes(), "{t}");
    }
}

fn rec_author_seed(rec: &SignedRecord) -> u8 {
    (1..=3).find(|&n| Identity::from_seed(&seed(n)).public() == rec.author()).unwrap()
}

#[test]
fn typical_listing_is_about_500_bytes() {
    let len = signed_listing().bytes().len();
    assert!((420..=620).contains(&len), "{len}");
}

/// Writes the seed corpus of the fuzz target: `cargo test -p troc-protocol -- --ignored write_fuzz_corpus`.
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/records");
    std::fs::create_dir_all(&dir).unwrap();
    for rec in sample_records() {
        std::fs::write(dir.join(format!("valid-{}", rec.record_type())), rec.bytes()).unwrap();
    }
    // A partially signed agreement (what the author sends the counterparty).
    let partial = PartiallySigned::sign(&alice(), NOW, sample_agreement()).unwrap();
    std::fs::write(dir.join("partial-agreement"), partial.to_bytes()).unwrap();
    // A listing with every option absent, a want and a service.
    let mut want = sample_listing();
    want.kind = Kind::Want;
    want.category = Category::Repair;
    want.terms = Terms { in_return: "Cake".into(), hours: Some(2), ..Terms::default() };
    want.available_from = None;
    want.available_until = None;
    want.tags.clear();
    let rec = Signed::sign(&bob(), NOW, want).unwrap();
    std::fs::write(dir.join("valid-listing-want"), rec.bytes()).unwrap();
    // A few invalid-but-signed ones, so the fuzzer starts next to the rules.
    let mut expired = sample_listing();
    expired.valid_until = NOW - 1;
    std::fs::write(dir.join("invalid-listing-valid-until"), forge_at(&expired, &[1], NOW - DAY)).unwrap();
    let mut self_review = sample_review();
    self_review.subject = pk(&alice());
    std::fs::write(dir.join("invalid-review-self"), forge(&self_review, &[1])).unwrap();
}

/// Every committed input of the `records` fuzz target through the target's check: a crash the
/// fuzzer once found stays fixed.
#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/records");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        crate::fuzzing::records(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "the records corpus is empty");
}

// ---------------------------------------------------------------------------------------------
// malformed

#[test]
fn malformed_every_truncation() {
    // Cutting bytes off the end never changes what was read before the cut, so every truncation is
    // malformed, except exactly at a signature boundary, where signatures are missing.
    for rec in sample_records() {
        let bytes = rec.bytes();
        let content_len = rec.content().len();
        for n in 0..bytes.len() {
            let got = decode(&bytes[..n]).map(|_| ()).unwrap_err();
            if n >= content_len && (n - content_len) % 64 == 0 {
                let have = (n - content_len) / 64;
                let need = rec.record_type().signature_count();
                assert_eq!(got, RecordError::MissingSignature { have, need }, "{} cut at {n}", rec.record_type());
            } else {
                assert_eq!(got.code(), "malformed", "{} cut at {n}: {got}", rec.record_type());
            }
        }
    }
}

#[test]
fn malformed_truncations_of_a_listing_at_chosen_offsets() {
    let rec = signed_listing();
    let bytes = rec.bytes();
    for n in [0, 1, 2, 20, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 10, 100, rec.content().len() - 1, bytes.len() - 1] {
        assert!(matches!(decode(&bytes[..n]), Err(RecordError::Malformed { .. })), "cut at {n}");
        assert_eq!(full_code(&bytes[..n]), "malformed", "cut at {n}");
    }
    assert_eq!(full_code(rec.content()), "missing_signature");
}

#[test]
fn malformed_trailing_bytes() {
    let rec = signed_listing();
    let mut one_more = rec.bytes().to_vec();
    one_more.push(0);
    assert_eq!(decode_code(&one_more), "malformed");
    let mut half_signature = rec.bytes().to_vec();
    half_signature.extend_from_slice(&[0u8; 32]);
    assert_eq!(decode_code(&half_signature), "malformed");
    // A whole extra signature is still one too many.
    let mut extra = rec.bytes().to_vec();
    extra.extend_from_slice(&rec.bytes()[rec.content().len()..]);
    assert_eq!(decode_code(&extra), "malformed");
    let mut short = rec.bytes().to_vec();
    short.pop();
    assert!(matches!(decode(&short), Err(RecordError::Malformed { offset, .. }) if offset == rec.content().len()));
}

#[test]
fn malformed_option_tag_2() {
    // A proposal's `end` option tag: header, two keys, listing key, revision, kind, start.
    let proposal = sample_proposal();
    let mut content = forge_content(&proposal, 2, NOW);
    let at = HEADER_LEN + 32 + 32 + 16 + 4 + 1 + 8;
    assert_eq!(content[at], 1);
    content[at] = 2;
    let bytes = sign_content(RecordType::Proposal, &content, &[2]);
    assert_eq!(
        decode(&bytes).unwrap_err(),
        RecordError::Malformed { offset: at, reason: "option tag is neither 0 nor 1" }
    );
    // The listing's max_loan_days option, with the tag 0xff.
    let listing = sample_listing();
    let mut content = forge_content(&listing, 1, NOW);
    let tags_len: usize = listing.tags.iter().map(|t| 2 + t.len()).sum::<usize>() + 1;
    let at = HEADER_LEN + 16 + 4 + 1 + 1 + 2 + listing.title.len() + 2 + listing.description.len() + tags_len;
    assert_eq!(content[at], 1);
    content[at] = 0xff;
    assert_eq!(decode_code(&sign_content(RecordType::Listing, &content, &[1])), "malformed");
}

#[test]
fn malformed_invalid_utf8() {
    let mut content = forge_content(&sample_profile(), 1, NOW);
    // The name "Alice" starts after the header and its u16 length.
    assert_eq!(&content[HEADER_LEN + 2..HEADER_LEN + 7], b"Alice");
    content[HEADER_LEN + 2] = 0xff;
    content[HEADER_LEN + 3] = 0xfe;
    let bytes = sign_content(RecordType::Profile, &content, &[1]);
    assert_eq!(
        decode(&bytes).unwrap_err(),
        RecordError::Malformed { offset: HEADER_LEN, reason: "text is not valid UTF-8" }
    );
    // A UTF-8 sequence cut in the middle (the first two bytes of "€").
    let mut content = forge_content(&sample_profile(), 1, NOW);
    content[HEADER_LEN + 2] = 0xe2;
    content[HEADER_LEN + 3] = 0x82;
    assert_eq!(decode_code(&sign_content(RecordType::Profile, &content, &[1])), "malformed");
}

#[test]
fn malformed_signature_section() {
    let rec = sign_body(Body::Agreement(sample_agreement()), &[1, 2], NOW);
    for extra in [1usize, 63, 65, 127] {
        let mut bytes = rec.content().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, extra));
        assert_eq!(decode_code(&bytes), "malformed", "{extra} signature bytes");
    }
    let mut three = rec.bytes().to_vec();
    three.extend_from_slice(&[0u8; 64]);
    assert_eq!(decode_code(&three), "malformed");
}

#[test]
fn malformed_length_prefix_past_the_end() {
    // A text length that runs past the end of the record.
    let mut content = forge_content(&sample_profile(), 1, NOW);
    content[HEADER_LEN] = 0;
    content[HEADER_LEN + 1] = 60; // name length 60 (<= MAX_NAME), but only the rest of the record follows
    let bytes = sign_content(RecordType::Profile, &content[..HEADER_LEN + 20], &[1]);
    // 20 bytes of content after the header and 64 of signature: the reader takes the signature as
    // text, and what is left is not a whole signature.
    assert_eq!(decode_code(&bytes), "malformed");
}

// ---------------------------------------------------------------------------------------------
// too_large, unknown_version, unknown_type

#[test]
fn too_large() {
    let mut bytes = signed_listing().bytes().to_vec();
    bytes.resize(MAX_RECORD_BYTES + 1, 0);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::TooLarge { len: MAX_RECORD_BYTES + 1, max: MAX_RECORD_BYTES });
    assert_eq!(full_code(&bytes), "too_large");
    assert_eq!(PartiallySigned::from_bytes(&bytes, NOW).unwrap_err().code(), "too_large");
    // Exactly at the limit is not too large (just malformed here).
    bytes.truncate(MAX_RECORD_BYTES);
    assert_eq!(decode_code(&bytes), "malformed");
    // Garbage over the limit is refused for its size before anything is read.
    assert_eq!(decode_code(&vec![0xffu8; MAX_RECORD_BYTES * 4]), "too_large");
}

#[test]
fn unknown_version() {
    for version in [0u8, 2, 0xff] {
        let content = raw_content(version, RecordType::Profile.code(), pk(&alice()).as_bytes(), NOW, |w| {
            sample_profile().encode(w)
        });
        let bytes = sign_content(RecordType::Profile, &content, &[1]);
        assert_eq!(decode(&bytes).unwrap_err(), RecordError::UnknownVersion(version));
        assert_eq!(full_code(&bytes), "unknown_version");
        // Even a record too short for its header says what is wrong with it.
        assert_eq!(decode(&[version]).unwrap_err(), RecordError::UnknownVersion(version));
        assert_eq!(decode(&bytes[..10]).unwrap_err(), RecordError::UnknownVersion(version));
    }
    assert_eq!(decode_code(&[]), "malformed");
    assert_eq!(decode_code(&[FORMAT_VERSION]), "malformed");
}

#[test]
fn unknown_type() {
    for code in [0u8, 16, 0x7f, 0xff] {
        let content = raw_content(FORMAT_VERSION, code, pk(&alice()).as_bytes(), NOW, |w| sample_profile().encode(w));
        let bytes = sign_content(RecordType::Profile, &content, &[1]);
        assert_eq!(decode(&bytes).unwrap_err(), RecordError::UnknownType(code));
        assert_eq!(decode(&bytes[..2]).unwrap_err(), RecordError::UnknownType(code));
    }
    for t in RecordType::ALL {
        assert_eq!(RecordType::from_code(t.code()).unwrap(), *t);
    }
}

// ---------------------------------------------------------------------------------------------
// invalid_key, weak_key

/// A non-canonical encoding of a valid key of large order: y + p for a small y that is on the
/// curve (dalek reduces y mod p when decoding, so it decodes to the same point as y).
fn non_canonical_key() -> [u8; 32] {
    let y = (2u8..19)
        .find(|&y| {
            let mut b = [0u8; 32];
            b[0] = y;
            PublicKey::from_bytes(&b).is_ok()
        })
        .expect("some small y is a point of large order");
    let mut b = [0xffu8; 32];
    b[0] = 0xed + y; // p = 2^255 - 19 = ed ff .. ff 7f little-endian; y + p does not carry for y < 19
    b[31] = 0x7f;
    assert!(ed25519_dalek::VerifyingKey::from_bytes(&b).is_ok(), "dalek accepts the non-canonical encoding");
    b
}

#[test]
fn invalid_key_author() {
    for author in [off_curve_point(), non_canonical_key()] {
        let content =
            raw_content(FORMAT_VERSION, RecordType::Profile.code(), &author, NOW, |w| sample_profile().encode(w));
        let mut bytes = content;
        bytes.extend_from_slice(&[0x11u8; 64]);
        assert_eq!(decode(&bytes).unwrap_err(), RecordError::InvalidKey { field: "author" });
        assert_eq!(PublicKey::from_bytes(&author).unwrap_err().code(), "invalid_key");
    }
    // The sign bit set on x = 0 ("negative zero"): also a second encoding of a point.
    let mut neg_zero = [0u8; 32];
    neg_zero[0] = 1;
    neg_zero[31] = 0x80;
    assert_eq!(PublicKey::from_bytes(&neg_zero).unwrap_err().code(), "invalid_key");
}

#[test]
fn invalid_key_in_body() {
    let mut content = forge_content(&sample_vouch(), 1, NOW);
    content[HEADER_LEN..HEADER_LEN + 32].copy_from_slice(&off_curve_point());
    let bytes = sign_content(RecordType::Vouch, &content, &[1]);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::InvalidKey { field: "subject" });
    content[HEADER_LEN..HEADER_LEN + 32].copy_from_slice(&non_canonical_key());
    let bytes = sign_content(RecordType::Vouch, &content, &[1]);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::InvalidKey { field: "subject" });
}

#[test]
fn weak_key_author() {
    let content = raw_content(FORMAT_VERSION, RecordType::Profile.code(), &small_order_point(), NOW, |w| {
        sample_profile().encode(w)
    });
    let mut bytes = content;
    bytes.extend_from_slice(&[0u8; 64]);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::WeakKey { field: "author" });
    // Every point of small order, not only the identity.
    for p in curve25519_dalek::constants::EIGHT_TORSION.iter() {
        let b = p.compress().to_bytes();
        assert_eq!(PublicKey::from_bytes(&b).unwrap_err().code(), "weak_key", "{}", hex::encode(b));
    }
}

#[test]
fn weak_key_in_body() {
    // A vouch for a small-order "person", and an agreement with one.
    let mut content = forge_content(&sample_vouch(), 1, NOW);
    content[HEADER_LEN..HEADER_LEN + 32].copy_from_slice(&small_order_point());
    let bytes = sign_content(RecordType::Vouch, &content, &[1]);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::WeakKey { field: "subject" });
    let mut content = forge_content(&sample_agreement(), 1, NOW);
    content[HEADER_LEN..HEADER_LEN + 32].copy_from_slice(&small_order_point());
    let bytes = sign_content(RecordType::Agreement, &content, &[1, 2]);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::WeakKey { field: "counterparty" });
    // A review's subject sits after the agreement id.
    let mut content = forge_content(&sample_review(), 1, NOW);
    content[HEADER_LEN + 32..HEADER_LEN + 64].copy_from_slice(&small_order_point());
    let bytes = sign_content(RecordType::Review, &content, &[1]);
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::WeakKey { field: "subject" });
}

// ---------------------------------------------------------------------------------------------
// bad_signature

#[test]
fn bad_signature_bit_flips_in_the_signature() {
    let rec = signed_listing();
    let start = rec.content().len();
    for bit in [0usize, 7, 100, 255, 256, 300, 500, 503, 511] {
        let mut bytes = rec.bytes().to_vec();
        bytes[start + bit / 8] ^= 1 << (bit % 8);
        // Flipping signature bits never changes what decodes.
        let u = decode(&bytes).unwrap();
        assert_eq!(u.id(), rec.id());
        assert_eq!(u.verify().unwrap_err(), RecordError::BadSignature { index: 0 }, "bit {bit}");
    }
}

#[test]
fn bad_signature_content_changed_and_resigned_by_another_key() {
    let rec = signed_listing();
    let mut content = rec.content().to_vec();
    // A bit flip in the title ("Cordless" -> "Bordless"), then signed by Bob, while Alice is the author.
    let at = HEADER_LEN + 16 + 4 + 1 + 1 + 2;
    assert_eq!(content[at], b'C');
    content[at] ^= 1;
    let bytes = sign_content(RecordType::Listing, &content, &[2]);
    let u = decode(&bytes).unwrap();
    assert_ne!(u.id(), rec.id());
    assert_eq!(u.verify().unwrap_err(), RecordError::BadSignature { index: 0 });
    // The same flip with the original signature.
    let mut bytes = rec.bytes().to_vec();
    bytes[at] ^= 1;
    assert_eq!(full_code(&bytes), "bad_signature");
}

#[test]
fn bad_signature_from_another_key() {
    for (body, signers) in sample_bodies() {
        if signers.len() != 1 {
            continue;
        }
        let wrong = if signers[0] == 3 { 1 } else { 3 };
        let content = forge_content(&body, signers[0], NOW);
        let bytes = sign_content(body.record_type(), &content, &[wrong]);
        assert_eq!(decode(&bytes).unwrap().verify().unwrap_err(), RecordError::BadSignature { index: 0 });
    }
}

#[test]
fn bad_signature_other_domain() {
    // A handover's content signed under the completion prefix (same body layout) does not verify.
    let rec = sign_body(sample_bodies().remove(5).0, &[1], NOW);
    assert_eq!(rec.record_type(), RecordType::Handover);
    let message = signed_message(RecordType::Completion, rec.content());
    let mut bytes = rec.content().to_vec();
    bytes.extend_from_slice(&signing_key(1).sign(&message).to_bytes());
    assert_eq!(full_code(&bytes), "bad_signature");
    // Nor does a plain ed25519 signature of the content alone.
    let mut bytes = rec.content().to_vec();
    bytes.extend_from_slice(&signing_key(1).sign(rec.content()).to_bytes());
    assert_eq!(full_code(&bytes), "bad_signature");
}

#[test]
fn bad_signature_forged_countersignature() {
    // Carol signs in Bob's place: the author's signature is fine, the second is not.
    let bytes = forge(&sample_agreement(), &[1, 3]);
    assert_eq!(decode(&bytes).unwrap().verify().unwrap_err(), RecordError::BadSignature { index: 1 });
    // Signatures swapped: the first one fails first.
    let rec = sign_body(Body::Agreement(sample_agreement()), &[1, 2], NOW);
    let sigs: Vec<Vec<u8>> = rec.signatures().map(<[u8]>::to_vec).collect();
    let mut swapped = rec.content().to_vec();
    swapped.extend_from_slice(&sigs[1]);
    swapped.extend_from_slice(&sigs[0]);
    assert_eq!(SignedRecord::from_bytes(&swapped, NOW).unwrap_err(), RecordError::BadSignature { index: 0 });
    // Both signed by the author.
    let bytes = forge(&sample_extension(), &[1, 1]);
    assert_eq!(SignedRecord::from_bytes(&bytes, NOW).unwrap_err(), RecordError::BadSignature { index: 1 });
}

#[test]
fn bad_signature_non_canonical_s() {
    // s + l is the same scalar, but verify_strict (and the ed25519 spec) require s < l.
    let rec = signed_listing();
    let sig: Vec<u8> = rec.signatures().next().unwrap().to_vec();
    let s = curve25519_dalek::Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
    // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
    let mut s_plus_l = [0u8; 32];
    let l_bytes: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = s.as_bytes()[i] as u16 + l_bytes[i] as u16 + carry;
        s_plus_l[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    let mut bytes = rec.content().to_vec();
    bytes.extend_from_slice(&sig[..32]);
    bytes.extend_from_slice(&s_plus_l);
    assert_eq!(full_code(&bytes), "bad_signature");
    let other = sign_body(Body::Profile(sample_profile()), &[1], NOW);
    let batch = verify_batch(vec![decode(&bytes).unwrap(), decode(other.bytes()).unwrap()]);
    assert_eq!(batch[0].as_ref().unwrap_err(), &RecordError::BadSignature { index: 0 });
    assert!(batch[1].is_ok());
}

// ---------------------------------------------------------------------------------------------
// missing_signature

#[test]
fn missing_signature() {
    let partial = PartiallySigned::sign(&alice(), NOW, sample_agreement()).unwrap();
    let bytes = partial.to_bytes();
    assert_eq!(decode(&bytes).unwrap_err(), RecordError::MissingSignature { have: 1, need: 2 });
    assert_eq!(full_code(&bytes), "missing_signature");
    let extension = PartiallySigned::sign(&alice(), NOW, sample_extension()).unwrap();
    assert_eq!(decode(&extension.to_bytes()).unwrap_err(), RecordError::MissingSignature { have: 1, need: 2 });
    // A listing without its signature.
    let rec = signed_listing();
    assert_eq!(decode(rec.content()).unwrap_err(), RecordError::MissingSignature { have: 0, need: 1 });
    // Signing a co-signed type with the one-signature API.
    assert_eq!(
        Signed::sign(&alice(), NOW, sample_agreement()).unwrap_err(),
        RecordError::MissingSignature { have: 1, need: 2 }
    );
    assert_eq!(
        Signed::sign(&alice(), NOW, Body::Extension(sample_extension())).unwrap_err(),
        RecordError::MissingSignature { have: 1, need: 2 }
    );
    // And the other way round: a one-signature type cannot be started as co-signed.
    assert_eq!(PartiallySigned::sign(&alice(), NOW, sample_listing()).unwrap_err().code(), "invalid_value");
}

// ---------------------------------------------------------------------------------------------
// author_mismatch

#[test]
fn author_mismatch_verify_from() {
    let rec = signed_listing();
    let err = decode(rec.bytes()).unwrap().verify_from(bob().public()).unwrap_err();
    assert_eq!(
        err,
        RecordError::AuthorMismatch { expected: bob().public().to_string(), found: alice().public().to_string() }
    );
    assert_eq!(decode(rec.bytes()).unwrap().verify_from(alice().public()).unwrap().id(), rec.id());
    // The author check does not skip the signature check.
    let mut bad = rec.bytes().to_vec();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(decode(&bad).unwrap().verify_from(alice().public()).unwrap_err().code(), "bad_signature");
}

#[test]
fn author_mismatch_countersign_by_the_wrong_identity() {
    let partial = PartiallySigned::sign(&alice(), NOW, sample_agreement()).unwrap();
    assert_eq!(partial.clone().countersign(&carol()).unwrap_err().code(), "author_mismatch");
    assert_eq!(partial.countersign(&alice()).unwrap_err().code(), "author_mismatch");
}

#[test]
fn author_mismatch_review_reveal() {
    let review = Signed::sign(&alice(), NOW, sample_review()).unwrap();
    let commitment = ReviewCommitment { agreement: rid(5), subject: pk(&bob()), review: review.id() };
    commitment.is_revealed_by(alice().public(), alice().public(), &review.id(), review.body()).unwrap();
    let err = commitment.is_revealed_by(carol().public(), alice().public(), &review.id(), review.body()).unwrap_err();
    assert_eq!(err.code(), "author_mismatch");
    let err = commitment.is_revealed_by(alice().public(), alice().public(), &rid(1), review.body()).unwrap_err();
    assert_eq!(err.code(), "invalid_value");
}

// ---------------------------------------------------------------------------------------------
// Rules of the bodies: not_own_record, self_reference, and the field rules. Each is checked on
// forged bytes (decode and the full pipeline) and on signing.

#[test]
fn not_own_record() {
    let mut w = sample_withdrawal();
    w.listing_author = pk(&bob());
    assert_rejected(w.clone(), &[1], "not_own_record");
    assert_eq!(decode(&forge(&w, &[1])).unwrap_err(), RecordError::NotOwnRecord { record_type: "withdrawal" });
    let mut r = sample_revocation();
    r.target_author = pk(&bob());
    assert_rejected(r.clone(), &[1], "not_own_record");
    assert_eq!(decode(&forge(&r, &[1])).unwrap_err(), RecordError::NotOwnRecord { record_type: "revocation" });
}

#[test]
fn self_reference() {
    // Bob proposes to himself.
    let mut p = sample_proposal();
    p.counterparty = pk(&bob());
    assert_rejected(p, &[2], "self_reference");
    // Alice agrees with herself (both signatures hers, so only the rule can refuse it).
    let mut a = sample_agreement();
    a.counterparty = pk(&alice());
    assert_rejected(a.clone(), &[1, 1], "self_reference");
    assert_eq!(decode(&forge(&a, &[1, 1])).unwrap_err(), RecordError::SelfReference { field: "counterparty" });
    let mut e = sample_extension();
    e.counterparty = pk(&alice());
    assert_rejected(e, &[1, 1], "self_reference");
    let mut r = sample_review();
    r.subject = pk(&alice());
    assert_rejected(r.clone(), &[1], "self_reference");
    assert_eq!(decode(&forge(&r, &[1])).unwrap_err(), RecordError::SelfReference { field: "subject" });
    let c = ReviewCommitment { agreement: rid(5), subject: pk(&alice()), review: rid(11) };
    assert_rejected(c, &[1], "self_reference");
    let mut v = sample_vouch();
    v.subject = pk(&alice());
    assert_rejected(v, &[1], "self_reference");
}

#[test]
fn location_too_precise() {
    let mut p = sample_profile();
    p.area = "u09tvwq".into();
    assert_rejected(p, &[1], "location_too_precise");
    let mut l = sample_listing();
    l.location = "u09tvwqrst".into();
    assert_rejected(l.clone(), &[1], "location_too_precise");
    assert!(matches!(decode(&forge(&l, &[1])), Err(RecordError::LocationTooPrecise { len: 10, max: MAX_GEOHASH_LEN })));
    // Six characters are fine; a seventh that is not even a geohash character is still "too precise".
    l.location = "u09tvw".into();
    assert_eq!(sign_code(l.clone(), 1), "ok");
    l.location = "u09tvw!".into();
    assert_rejected(l, &[1], "location_too_precise");
}

#[test]
fn field_too_long() {
    let mut l = sample_listing();
    l.title = "x".repeat(MAX_TITLE + 1);
    assert_rejected(l.clone(), &[1], "field_too_long");
    assert_eq!(
        decode(&forge(&l, &[1])).unwrap_err(),
        RecordError::FieldTooLong { field: "title", len: MAX_TITLE + 1, max: MAX_TITLE }
    );
    l.title = "x".repeat(MAX_TITLE);
    assert_eq!(sign_code(l, 1), "ok");
    // Limits count bytes, not characters: 61 two-byte characters are 122 bytes.
    let mut l = sample_listing();
    l.title = "é".repeat(61);
    assert_rejected(l, &[1], "field_too_long");
    let mut l = sample_listing();
    l.description = "d".repeat(MAX_DESCRIPTION + 1);
    assert_rejected(l, &[1], "field_too_long");
    let mut l = sample_listing();
    l.tags = vec!["t".repeat(MAX_TAG + 1)];
    assert_rejected(l, &[1], "field_too_long");
    let mut p = sample_profile();
    p.name = "n".repeat(MAX_NAME + 1);
    assert_rejected(p, &[1], "field_too_long");
    let h = Handover { agreement: rid(5), note: "n".repeat(MAX_NOTE + 1) };
    assert_rejected(h, &[1], "field_too_long");
    let mut v = sample_vouch();
    v.context = "c".repeat(MAX_VOUCH_CONTEXT + 1);
    assert_rejected(v, &[1], "field_too_long");
    let mut p = sample_proposal();
    p.message = "m".repeat(MAX_MESSAGE + 1);
    assert_rejected(p, &[2], "field_too_long");
}

#[test]
fn field_empty() {
    let mut p = sample_profile();
    p.name = String::new();
    assert_rejected(p.clone(), &[1], "field_empty");
    p.name = " \t ".into();
    assert_rejected(p, &[1], "field_empty");
    let mut l = sample_listing();
    l.title = "   ".into();
    assert_rejected(l, &[1], "field_empty");
    let mut l = sample_listing();
    l.community = String::new();
    assert_rejected(l, &[1], "field_empty");
    let mut v = sample_vouch();
    v.context = String::new();
    assert_rejected(v, &[1], "field_empty");
    // A swap must say what it wants in return.
    let mut l = sample_listing();
    l.kind = Kind::Swap;
    l.terms = Terms::default();
    assert_rejected(l.clone(), &[1], "field_empty");
    l.terms.in_return = "A bike pump".into();
    assert_eq!(sign_code(l, 1), "ok");
}

#[test]
fn forbidden_character() {
    let mut l = sample_listing();
    l.description = "Nice drill\u{1b}[2J".into();
    assert_rejected(l, &[1], "forbidden_character");
    let mut p = sample_profile();
    p.about = "Hello \u{202e}dlrow".into();
    assert_rejected(p, &[1], "forbidden_character");
    let mut l = sample_listing();
    l.title = "Drill\nfor sale".into();
    assert_rejected(l.clone(), &[1], "forbidden_character");
    assert_eq!(decode(&forge(&l, &[1])).unwrap_err(), RecordError::ForbiddenCharacter { field: "title" });
    // The same newline is fine in a multi-line field.
    let mut l = sample_listing();
    l.description = "Drill\nfor sale".into();
    assert_eq!(sign_code(l, 1), "ok");
    for c in ['\u{0}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2066}', '\u{2069}', '\u{202a}'] {
        let v = Vouch { context: format!("ok{c}"), ..sample_vouch() };
        assert_rejected(v, &[1], "forbidden_character");
    }
}

#[test]
fn too_many_items() {
    let mut l = sample_listing();
    l.tags = (0..=MAX_TAGS).map(|i| format!("tag-{i}")).collect();
    assert_rejected(l.clone(), &[1], "too_many_items");
    assert_eq!(
        decode(&forge(&l, &[1])).unwrap_err(),
        RecordError::TooManyItems { field: "tags", len: MAX_TAGS + 1, max: MAX_TAGS }
    );
    l.tags.pop();
    assert_eq!(sign_code(l, 1), "ok");
    // Seven facets (there are only five kinds, so some repeat: the count is refused first).
    let mut r = sample_review();
    r.facets = (0..=MAX_FACETS)
        .map(|i| FacetRating { facet: Facet::ALL[i % Facet::ALL.len()], rating: Rating::Positive })
        .collect();
    assert_rejected(r, &[1], "too_many_items");
}

#[test]
fn invalid_value_unknown_codes() {
    let listing_content = forge_content(&sample_listing(), 1, NOW);
    let kind_at = HEADER_LEN + 16 + 4;
    for (at, value, field) in [
        (kind_at, 0u8, "kind"),
        (kind_at, 7, "kind"),
        (kind_at + 1, 13, "category"),
        (kind_at + 1, 0, "category"),
        (kind_at + 1, 64, "category"),
    ] {
        let mut content = listing_content.clone();
        content[at] = value;
        let bytes = sign_content(RecordType::Listing, &content, &[1]);
        assert_eq!(decode(&bytes).unwrap_err(), RecordError::InvalidValue { field, reason: "unknown code" });
    }
    // A review's rating, a cancellation's reason, an acknowledgement's condition.
    let mut content = forge_content(&sample_review(), 1, NOW);
    content[HEADER_LEN + 64] = 4;
    assert_eq!(decode_code(&sign_content(RecordType::Review, &content, &[1])), "invalid_value");
    let c = Cancellation { deal: rid(4), reason: CancelReason::Declined, note: String::new() };
    let mut content = forge_content(&c, 1, NOW);
    content[HEADER_LEN + 32] = 9;
    assert_eq!(decode_code(&sign_content(RecordType::Cancellation, &content, &[1])), "invalid_value");
    let a = Acknowledgement { agreement: rid(5), subject: rid(6), condition: Condition::Damaged, note: String::new() };
    let mut content = forge_content(&a, 1, NOW);
    content[HEADER_LEN + 64] = 0;
    assert_eq!(decode_code(&sign_content(RecordType::Acknowledgement, &content, &[1])), "invalid_value");
}

#[test]
fn invalid_value_listing_rules() {
    type Change = Box<dyn Fn(&mut Listing)>;
    let cases: Vec<(&str, Change)> = vec![
        ("revision 0", Box::new(|l| l.revision = 0)),
        ("valid_until = created_at", Box::new(|l| l.valid_until = NOW)),
        ("valid_until < created_at", Box::new(|l| l.valid_until = NOW - 1)),
        ("valid_until > 180 days", Box::new(|l| l.valid_until = NOW + MAX_LISTING_LIFETIME_SECS + 1)),
        (
            "available_from > available_until",
            Box::new(|l| {
                l.available_from = Some(NOW + 10);
                l.available_until = Some(NOW + 9);
            }),
        ),
        (
            "deposit on swap",
            Box::new(|l| {
                l.kind = Kind::Swap;
                l.terms.max_loan_days = None;
                l.terms.in_return = "Books".into();
            }),
        ),
        ("in_return on lend", Box::new(|l| l.terms.in_return = "Cake".into())),
        (
            "in_return on give",
            Box::new(|l| {
                l.kind = Kind::Give;
                l.terms = Terms { in_return: "Cake".into(), ..Terms::default() };
            }),
        ),
        ("hours on a non-service", Box::new(|l| l.terms.hours = Some(2))),
        (
            "hours 0 on a service",
            Box::new(|l| {
                l.category = Category::Repair;
                l.terms.hours = Some(0);
            }),
        ),
        (
            "hours over the limit",
            Box::new(|l| {
                l.category = Category::Lessons;
                l.terms.hours = Some(MAX_HOURS + 1);
            }),
        ),
        ("max_loan_days 0", Box::new(|l| l.terms.max_loan_days = Some(0))),
        ("max_loan_days over the limit", Box::new(|l| l.terms.max_loan_days = Some(MAX_LOAN_DAYS + 1))),
        (
            "max_loan_days on give",
            Box::new(|l| {
                l.kind = Kind::Give;
                l.terms.deposit = None;
            }),
        ),
        (
            "deposit on want",
            Box::new(|l| {
                l.kind = Kind::Want;
            }),
        ),
        ("duplicate tag", Box::new(|l| l.tags = vec!["drill".into(), "diy".into(), "drill".into()])),
        ("tag not a slug", Box::new(|l| l.tags = vec!["Drill".into()])),
        ("community not a slug", Box::new(|l| l.community = "north--end".into())),
        ("location not a geohash", Box::new(|l| l.location = "u0a".into())),
        ("bad currency", Box::new(|l| l.terms.deposit = Some(Money { amount_minor: 1, currency: Currency(*b"eur") }))),
        (
            "currency not letters",
            Box::new(|l| l.terms.deposit = Some(Money { amount_minor: 1, currency: Currency([b'E', 0xff, b'R']) })),
        ),
    ];
    for (what, change) in cases {
        let mut l = sample_listing();
        change(&mut l);
        let bytes = forge(&l, &[1]);
        assert_eq!(decode_code(&bytes), "invalid_value", "decode: {what}");
        assert_eq!(full_code(&bytes), "invalid_value", "from_bytes: {what}");
        assert_eq!(sign_code(l, 1), "invalid_value", "sign: {what}");
    }
    // The edges that are allowed.
    let mut l = sample_listing();
    l.valid_until = NOW + MAX_LISTING_LIFETIME_SECS;
    l.available_from = Some(NOW + 5);
    l.available_until = Some(NOW + 5);
    l.terms.max_loan_days = Some(MAX_LOAN_DAYS);
    assert_eq!(sign_code(l, 1), "ok");
}

#[test]
fn invalid_value_deal_rules() {
    let cases: Vec<(&str, Body, u8)> = vec![
        ("lend agreement without due", Body::Agreement(Agreement { due: None, ..sample_agreement() }), 1),
        ("due before start", Body::Agreement(Agreement { due: Some(NOW + DAY), ..sample_agreement() }), 1),
        (
            "due on a give",
            Body::Agreement(Agreement { kind: Kind::Give, due: Some(NOW + 9 * DAY), ..sample_agreement() }),
            1,
        ),
        (
            "due on a swap",
            Body::Agreement(Agreement { kind: Kind::Swap, due: Some(NOW + 9 * DAY), ..sample_agreement() }),
            1,
        ),
        (
            "listing author not a party",
            Body::Agreement(Agreement { listing_author: pk(&carol()), ..sample_agreement() }),
            1,
        ),
        ("proposal revision 0", Body::Proposal(Proposal { listing_revision: 0, ..sample_proposal() }), 2),
        ("proposal end before start", Body::Proposal(Proposal { end: Some(NOW + DAY), ..sample_proposal() }), 2),
        (
            "proposal listing author not a party",
            Body::Proposal(Proposal { listing_author: pk(&carol()), ..sample_proposal() }),
            2,
        ),
        (
            "duplicate facet",
            Body::Review(Review {
                facets: vec![
                    FacetRating { facet: Facet::Care, rating: Rating::Positive },
                    FacetRating { facet: Facet::Care, rating: Rating::Negative },
                ],
                ..sample_review()
            }),
            1,
        ),
        ("vouch expires at creation", Body::Vouch(Vouch { expires_at: NOW, ..sample_vouch() }), 1),
        (
            "vouch over two years",
            Body::Vouch(Vouch { expires_at: NOW + MAX_VOUCH_LIFETIME_SECS + 1, ..sample_vouch() }),
            1,
        ),
    ];
    for (what, body, author) in cases {
        let signers: Vec<u8> = if body.record_type().signature_count() == 2 { vec![author, 2] } else { vec![author] };
        let bytes = forge(&body, &signers);
        assert_eq!(decode_code(&bytes), "invalid_value", "decode: {what}");
        assert_eq!(sign_code(body, author), "invalid_value", "sign: {what}");
    }
    // A share may have a due date, or not.
    for due in [None, Some(NOW + 2 * DAY)] {
        assert_eq!(sign_code(Agreement { kind: Kind::Share, due, ..sample_agreement() }, 1), "ok");
    }
}

// ---------------------------------------------------------------------------------------------
// from_future, expired

#[test]
fn from_future() {
    let skew = MAX_CLOCK_SKEW_SECS;
    let rec = Signed::sign(&alice(), NOW + skew + 1, sample_profile()).unwrap();
    // Decoding does not look at the clock; the time check does.
    let u = decode(rec.bytes()).unwrap();
    assert_eq!(
        u.check_time(NOW).unwrap_err(),
        RecordError::FromFuture { created_at: NOW + skew + 1, now: NOW, max_skew: skew }
    );
    assert_eq!(SignedRecord::from_bytes(rec.bytes(), NOW).unwrap_err().code(), "from_future");
    assert_eq!(rec.check_time(NOW).unwrap_err().code(), "from_future");
    // Exactly at the allowed skew is accepted.
    let rec = Signed::sign(&alice(), NOW + skew, sample_profile()).unwrap();
    SignedRecord::from_bytes(rec.bytes(), NOW).unwrap();
    // No overflow at the end of time.
    let rec = Signed::sign(&alice(), u64::MAX, sample_profile()).unwrap();
    SignedRecord::from_bytes(rec.bytes(), u64::MAX - skew).unwrap();
    assert_eq!(SignedRecord::from_bytes(rec.bytes(), u64::MAX - skew - 1).unwrap_err().code(), "from_future");
    // A co-signed record from the future, received partially signed.
    let partial = PartiallySigned::sign(&alice(), NOW + skew + 1, sample_extension()).unwrap();
    assert_eq!(PartiallySigned::from_bytes(&partial.to_bytes(), NOW).unwrap_err().code(), "from_future");
}

#[test]
fn expired() {
    // A listing made ten days ago, valid until now: expired now, valid a second earlier.
    let created = NOW - 10 * DAY;
    let l = Listing { valid_until: NOW, available_from: None, available_until: None, ..sample_listing() };
    let rec = Signed::sign(&alice(), created, l).unwrap();
    assert_eq!(
        SignedRecord::from_bytes(rec.bytes(), NOW).unwrap_err(),
        RecordError::Expired { expired_at: NOW, now: NOW }
    );
    assert_eq!(SignedRecord::from_bytes(rec.bytes(), NOW + 1).unwrap_err().code(), "expired");
    let ok = SignedRecord::from_bytes(rec.bytes(), NOW - 1).unwrap();
    assert_eq!(ok.check_time(NOW).unwrap_err().code(), "expired");
    // A vouch.
    let v = Vouch { expires_at: NOW, ..sample_vouch() };
    let rec = Signed::sign(&alice(), created, v).unwrap();
    assert_eq!(SignedRecord::from_bytes(rec.bytes(), NOW).unwrap_err().code(), "expired");
    SignedRecord::from_bytes(rec.bytes(), NOW - 1).unwrap();
    // Other types never expire.
    let rec = Signed::sign(&alice(), created, sample_profile()).unwrap();
    SignedRecord::from_bytes(rec.bytes(), NOW + 100 * 365 * DAY).unwrap();
}

/// Every code of `RecordError::CODES` is produced by something bytes, signing or verifying can do,
/// and no code is produced that the list does not name.
#[test]
fn every_code_is_reachable() {
    let mut seen = std::collections::BTreeSet::new();
    let rec = signed_listing();
    let mut add = |r: Result<(), RecordError>| {
        let code = r.unwrap_err().code();
        assert!(RecordError::CODES.contains(&code), "{code} not in CODES");
        seen.insert(code);
    };
    add(decode(&rec.bytes()[..50]).map(|_| ()));
    add(decode(&vec![1u8; MAX_RECORD_BYTES + 1]).map(|_| ()));
    add(decode(&[9]).map(|_| ()));
    add(decode(&[1, 99]).map(|_| ()));
    let mut bytes = rec.bytes().to_vec();
    bytes[2..34].copy_from_slice(&off_curve_point());
    add(decode(&bytes).map(|_| ()));
    bytes[2..34].copy_from_slice(&small_order_point());
    add(decode(&bytes).map(|_| ()));
    let mut bytes = rec.bytes().to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    add(SignedRecord::from_bytes(&bytes, NOW).map(|_| ()));
    add(decode(rec.content()).map(|_| ()));
    add(decode(rec.bytes()).unwrap().verify_from(bob().public()).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Withdrawal { listing_author: pk(&bob()), ..sample_withdrawal() }).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Vouch { subject: pk(&alice()), ..sample_vouch() }).map(|_| ()));
    add(SignedRecord::from_bytes(rec.bytes(), NOW - 601).map(|_| ()));
    add(SignedRecord::from_bytes(rec.bytes(), NOW + 31 * DAY).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Profile { area: "u09tvwx".into(), ..sample_profile() }).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Profile { name: "n".repeat(65), ..sample_profile() }).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Profile { name: String::new(), ..sample_profile() }).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Profile { name: "a\u{7}".into(), ..sample_profile() }).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Listing { tags: vec!["a".into(); 13], ..sample_listing() }).map(|_| ()));
    add(Signed::sign(&alice(), NOW, Listing { revision: 0, ..sample_listing() }).map(|_| ()));
    let all: std::collections::BTreeSet<&str> = RecordError::CODES.iter().copied().collect();
    assert_eq!(seen, all);
}

// ---------------------------------------------------------------------------------------------
// Signing refuses what verification refuses

/// Every invalid body of the tests above, forged and signed: decoding the bytes and signing the
/// body give the same error, variant and fields.
#[test]
fn signing_refuses_exactly_what_decoding_refuses() {
    let bodies: Vec<(Body, u8)> = vec![
        (Body::Profile(Profile { name: String::new(), ..sample_profile() }), 1),
        (Body::Profile(Profile { area: "u09tvwqq".into(), ..sample_profile() }), 1),
        (Body::Profile(Profile { community: "North".into(), ..sample_profile() }), 1),
        (Body::Profile(Profile { contact: "a\nb".into(), ..sample_profile() }), 1),
        (Body::Listing(Listing { revision: 0, ..sample_listing() }), 1),
        (Body::Listing(Listing { title: "t".repeat(200), ..sample_listing() }), 1),
        (Body::Listing(Listing { tags: vec!["x".into(); 20], ..sample_listing() }), 1),
        (Body::Listing(Listing { valid_until: NOW + 181 * DAY, ..sample_listing() }), 1),
        (Body::Withdrawal(Withdrawal { listing_author: pk(&carol()), ..sample_withdrawal() }), 1),
        (Body::Proposal(Proposal { counterparty: pk(&bob()), ..sample_proposal() }), 2),
        (Body::Agreement(Agreement { due: None, ..sample_agreement() }), 1),
        (Body::Handover(Handover { agreement: rid(1), note: "\u{1b}".into() }), 1),
        (Body::Return(Return { agreement: rid(1), note: "r".repeat(MAX_NOTE + 1) }), 1),
        (Body::Completion(Completion { agreement: rid(1), note: "\u{2067}".into() }), 1),
        (Body::Cancellation(Cancellation { deal: rid(1), reason: CancelReason::Dispute, note: "\r".into() }), 1),
        (Body::Extension(Extension { counterparty: pk(&alice()), ..sample_extension() }), 1),
        (Body::Review(Review { text: "\u{7f}".into(), ..sample_review() }), 1),
        (Body::ReviewCommitment(ReviewCommitment { agreement: rid(1), subject: pk(&alice()), review: rid(2) }), 1),
        (Body::Vouch(Vouch { context: " ".into(), ..sample_vouch() }), 1),
        (Body::Revocation(Revocation { target_author: pk(&bob()), ..sample_revocation() }), 1),
    ];
    for (body, author) in bodies {
        let signers: Vec<u8> = if body.record_type().signature_count() == 2 { vec![author, 2] } else { vec![author] };
        let decoded = decode(&forge(&body, &signers)).map(|_| ()).unwrap_err();
        let id = Identity::from_seed(&seed(author));
        let signed = if signers.len() == 2 {
            PartiallySigned::sign(&id, NOW, body.clone()).map(|_| ()).unwrap_err()
        } else {
            Signed::sign(&id, NOW, body.clone()).map(|_| ()).unwrap_err()
        };
        assert_eq!(decoded, signed, "{body:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Batch verification

/// `n` valid listings by four different authors (signed once per test run: signing is slow in
/// debug builds).
fn many_listings(n: usize) -> Vec<SignedRecord> {
    static LISTINGS: std::sync::LazyLock<Vec<SignedRecord>> = std::sync::LazyLock::new(|| sign_listings(64));
    if n <= LISTINGS.len() { LISTINGS[..n].to_vec() } else { sign_listings(n) }
}

fn sign_listings(n: usize) -> Vec<SignedRecord> {
    (0..n)
        .map(|i| {
            let author = Identity::from_seed(&seed(1 + (i % 4) as u8));
            let l = Listing { key: ListingKey([i as u8; 16]), revision: 1 + i as u32, ..sample_listing() };
            Signed::sign(&author, NOW, l).unwrap().into_any()
        })
        .collect()
}

fn decode_all(records: &[SignedRecord]) -> Vec<Unverified> {
    records.iter().map(|r| decode(r.bytes()).unwrap()).collect()
}

#[test]
fn verify_batch_all_valid() {
    let records = many_listings(64);
    let batch = verify_batch(decode_all(&records));
    assert_eq!(batch.len(), 64);
    for (rec, got) in records.iter().zip(&batch) {
        let one = decode(rec.bytes()).unwrap().verify().unwrap();
        let got = got.as_ref().unwrap();
        assert_eq!(got.id(), one.id());
        assert_eq!(got.id(), rec.id());
        assert_eq!(got.bytes(), rec.bytes());
    }
    // Empty and single batches.
    assert!(verify_batch(Vec::new()).is_empty());
    assert_eq!(verify_batch(decode_all(&records[..1]))[0].as_ref().unwrap().id(), records[0].id());
}

#[test]
fn verify_batch_one_bad_signature() {
    let records = many_listings(64);
    let mut unverified = decode_all(&records);
    let mut bad = records[37].bytes().to_vec();
    let last = bad.len() - 10;
    bad[last] ^= 0x40;
    unverified[37] = decode(&bad).unwrap();
    let batch = verify_batch(unverified);
    for (i, got) in batch.iter().enumerate() {
        if i == 37 {
            assert_eq!(got.as_ref().unwrap_err(), &RecordError::BadSignature { index: 0 });
        } else {
            assert_eq!(got.as_ref().unwrap().id(), records[i].id(), "record {i}");
        }
    }
    // Records signed by the wrong key, twice in the batch.
    let mut unverified = decode_all(&records[..8]);
    for i in [0, 5] {
        let c = records[i].content();
        unverified[i] = decode(&sign_content(RecordType::Listing, c, &[9])).unwrap();
    }
    let codes: Vec<&str> =
        verify_batch(unverified).iter().map(|r| r.as_ref().map_or_else(|e| e.code(), |_| "ok")).collect();
    assert_eq!(codes, ["bad_signature", "ok", "ok", "ok", "ok", "bad_signature", "ok", "ok"]);
}

#[test]
fn verify_batch_with_co_signed_records() {
    let records = sample_records();
    let batch = verify_batch(decode_all(&records));
    for (rec, got) in records.iter().zip(&batch) {
        assert_eq!(got.as_ref().unwrap().id(), rec.id());
    }
    // A forged counter-signature in the batch is caught, with its index.
    let mut unverified = decode_all(&records);
    let agreement_at = RecordType::ALL.iter().position(|t| *t == RecordType::Agreement).unwrap();
    unverified[agreement_at] = decode(&forge(&sample_agreement(), &[1, 3])).unwrap();
    let batch = verify_batch(unverified);
    for (i, got) in batch.iter().enumerate() {
        if i == agreement_at {
            assert_eq!(got.as_ref().unwrap_err(), &RecordError::BadSignature { index: 1 });
        } else {
            assert!(got.is_ok(), "record {i}");
        }
    }
}

/// A signature (R, s) by `signer` over `message` where R is given and s = H(R, A, M) * a: it
/// satisfies the cofactorless equation sB = R + kA whenever R is (an encoding of) the identity, so
/// only the strict rules on R refuse it.
fn signature_with_r(signer: u8, message: &[u8], r: [u8; 32]) -> [u8; 64] {
    use sha2::{Digest, Sha512};
    let key = signing_key(signer);
    let mut h = Sha512::new();
    h.update(r);
    h.update(key.verifying_key().as_bytes());
    h.update(message);
    let k = curve25519_dalek::Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = k * key.to_scalar();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

#[test]
fn small_order_and_non_canonical_r_refused_by_verify_and_verify_batch() {
    // The identity as R: canonical [1, 0, ..], "negative zero" (sign bit set), and y = p + 1.
    let mut negative_zero = small_order_point();
    negative_zero[31] |= 0x80;
    let mut p_plus_1 = [0xffu8; 32];
    p_plus_1[0] = 0xee;
    p_plus_1[31] = 0x7f;
    let others = many_listings(5);
    for r in [small_order_point(), negative_zero, p_plus_1] {
        let rec = signed_listing();
        let message = signed_message(RecordType::Listing, rec.content());
        let sig = signature_with_r(1, &message, r);
        // The crafted signature is not nonsense: the lenient (cofactorless, non-strict) checks
        // accept it, so only the strict rules stand between it and acceptance.
        let vk = signing_key(1).verifying_key();
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
        let lenient = vk.verify(&message, &dalek_sig).is_ok();
        let raw_batch = ed25519_dalek::verify_batch(&[&message[..], &message[..]], &[dalek_sig, dalek_sig], &[vk, vk]);
        assert!(lenient || raw_batch.is_ok(), "R {} should fool a lenient check", hex::encode(r));
        assert!(vk.verify_strict(&message, &dalek_sig).is_err());

        let mut bytes = rec.content().to_vec();
        bytes.extend_from_slice(&sig);
        assert_eq!(decode(&bytes).unwrap().verify().unwrap_err(), RecordError::BadSignature { index: 0 });
        let mut batch_input = decode_all(&others);
        batch_input.insert(2, decode(&bytes).unwrap());
        let batch = verify_batch(batch_input);
        assert_eq!(batch[2].as_ref().unwrap_err(), &RecordError::BadSignature { index: 0 }, "R {}", hex::encode(r));
        assert_eq!(batch.iter().filter(|r| r.is_ok()).count(), 5);
        // Two of them together, so the batch holds no valid signature to dilute the check.
        let batch = verify_batch(vec![decode(&bytes).unwrap(), decode(&bytes).unwrap()]);
        assert!(batch.iter().all(|r| r.as_ref().unwrap_err() == &RecordError::BadSignature { index: 0 }));
        // The partially signed path refuses it too.
        let agreement = forge_content(&sample_agreement(), 1, NOW);
        let m = signed_message(RecordType::Agreement, &agreement);
        let mut partial = agreement.clone();
        partial.extend_from_slice(&signature_with_r(1, &m, r));
        assert_eq!(PartiallySigned::from_bytes(&partial, NOW).unwrap_err(), RecordError::BadSignature { index: 0 });
    }
}

// ---------------------------------------------------------------------------------------------
// Co-signing

#[test]
fn partially_signed_round_trip() {
    for body in [Body::Agreement(sample_agreement()), Body::Extension(sample_extension())] {
        // Alice signs first and sends the bytes to Bob.
        let partial = PartiallySigned::sign(&alice(), NOW, body.clone()).unwrap();
        let wire = partial.to_bytes();
        assert_eq!(wire.len(), forge_content(&body, 1, NOW).len() + 64);
        // Bob checks them and adds his signature.
        let received = PartiallySigned::from_bytes(&wire, NOW).unwrap();
        assert_eq!(received.id(), partial.id());
        assert_eq!(received.body(), &body);
        assert_eq!(received.header().author, pk(&alice()));
        let signed = received.countersign(&bob()).unwrap();
        assert_eq!(signed.id(), partial.id());
        assert_eq!(signed.cosigner(), Some(pk(&bob())));
        assert_eq!(signed.signatures().count(), 2);
        // Anyone can verify the complete record, and it is the one both would have made.
        let checked = SignedRecord::from_bytes(signed.bytes(), NOW).unwrap();
        assert_eq!(checked.id(), signed.id());
        assert_eq!(checked.bytes(), sign_body(body, &[1, 2], NOW).bytes());
    }
}

#[test]
fn partially_signed_add_countersignature() {
    let partial = PartiallySigned::sign(&alice(), NOW, sample_agreement()).unwrap();
    let content = forge_content(&sample_agreement(), 1, NOW);
    let message = signed_message(RecordType::Agreement, &content);
    // Bob's signature, made on his side and sent back.
    let good = signing_key(2).sign(&message).to_bytes();
    let signed = partial.clone().add_countersignature(&good).unwrap();
    assert_eq!(SignedRecord::from_bytes(signed.bytes(), NOW).unwrap().id(), partial.id());
    // Carol's signature, Alice's own again, a flipped bit, Bob's over another message: all refused.
    let carol_sig = signing_key(3).sign(&message).to_bytes();
    let alice_sig = signing_key(1).sign(&message).to_bytes();
    let mut flipped = good;
    flipped[10] ^= 4;
    let other = signing_key(2).sign(b"something else").to_bytes();
    for forged in [carol_sig, alice_sig, flipped, other, [0u8; 64]] {
        assert_eq!(partial.clone().add_countersignature(&forged).unwrap_err(), RecordError::BadSignature { index: 1 });
    }
}

#[test]
fn partially_signed_from_bytes_refusals() {
    let partial = PartiallySigned::sign(&alice(), NOW, sample_agreement()).unwrap();
    let wire = partial.to_bytes();
    // The author's signature is checked.
    let mut bad = wire.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(PartiallySigned::from_bytes(&bad, NOW).unwrap_err(), RecordError::BadSignature { index: 0 });
    // A complete record is not a partial one (one signature too many).
    let complete = partial.clone().countersign(&bob()).unwrap();
    assert_eq!(PartiallySigned::from_bytes(complete.bytes(), NOW).unwrap_err().code(), "malformed");
    // A one-signature type is not co-signed: its content alone is refused for its type, the
    // complete record for carrying a signature too many.
    let listing = signed_listing();
    assert_eq!(PartiallySigned::from_bytes(listing.content(), NOW).unwrap_err().code(), "invalid_value");
    assert_eq!(PartiallySigned::from_bytes(listing.bytes(), NOW).unwrap_err().code(), "malformed");
    // The rules of the body still apply.
    let bytes = forge(&Agreement { due: None, ..sample_agreement() }, &[1]);
    assert_eq!(PartiallySigned::from_bytes(&bytes, NOW).unwrap_err().code(), "invalid_value");
    // Truncations.
    for n in 0..wire.len() {
        assert!(PartiallySigned::from_bytes(&wire[..n], NOW).is_err(), "cut at {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Typed access and JSON

#[test]
fn downcast_and_into_any() {
    let rec = signed_listing();
    let typed: Signed<Listing> = rec.clone().downcast::<Listing>().unwrap();
    assert_eq!(typed.body(), &sample_listing());
    assert_eq!(typed.id(), rec.id());
    // The wrong type hands the record back untouched.
    let back = rec.clone().downcast::<Profile>().unwrap_err();
    assert_eq!(back, rec);
    assert_eq!(back.id(), rec.id());
    // into_any forgets the type, nothing else.
    let any = typed.into_any();
    assert_eq!(any.bytes(), rec.bytes());
    assert_eq!(any.body(), &Body::Listing(sample_listing()));
    for rec in sample_records() {
        let t = rec.record_type();
        let any = match t {
            RecordType::Agreement => rec.downcast::<Agreement>().unwrap().into_any(),
            RecordType::Vouch => rec.downcast::<Vouch>().unwrap().into_any(),
            _ => rec.downcast::<Body>().unwrap(),
        };
        assert_eq!(any.record_type(), t);
    }
}

#[test]
fn to_json() {
    let rec = signed_listing();
    let json = serde_json::to_value(rec.to_json()).unwrap();
    assert_eq!(json["id"], rec.id().to_string());
    assert_eq!(json["id"].as_str().unwrap().len(), 64);
    assert_eq!(json["type"], "listing");
    assert_eq!(json["version"], 1);
    let author = json["author"].as_str().unwrap();
    assert!(author.starts_with("12D3KooW"), "{author}");
    assert_eq!(author, alice().peer_id().to_base58());
    assert_eq!(json["created_at"], NOW);
    assert_eq!(json["body"]["title"], "Cordless drill (18 V) with two batteries");
    assert_eq!(json["body"]["kind"], "lend");
    assert_eq!(json["body"]["category"], "tools");
    assert_eq!(json["body"]["tags"][2], "power-tools");
    assert_eq!(json["body"]["terms"]["deposit"]["currency"], "EUR");
    assert_eq!(json["body"]["terms"]["deposit"]["amount_minor"], 2000);
    assert_eq!(json["body"]["key"], hex::encode([7u8; 16]));
    assert_eq!(json["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(json["signatures"][0].as_str().unwrap().len(), 128);
    assert_eq!(hex::decode(json["bytes"].as_str().unwrap()).unwrap(), rec.bytes());
    // Keys in bodies are PeerIds too; the typed view has the same body.
    let agreement = sign_body(Body::Agreement(sample_agreement()), &[1, 2], NOW).downcast::<Agreement>().unwrap();
    let json = serde_json::to_value(agreement.to_json()).unwrap();
    assert_eq!(json["body"]["counterparty"], bob().peer_id().to_base58());
    assert_eq!(json["signatures"].as_array().unwrap().len(), 2);
    // Every body reads back from its JSON.
    for rec in sample_records() {
        let json = serde_json::to_string(rec.body()).unwrap();
        assert_eq!(&serde_json::from_str::<Body>(&json).unwrap(), rec.body());
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Everything a peer can do with bytes from outside, none of which may panic.
fn swallow(bytes: &[u8]) -> Result<SignedRecord, RecordError> {
    let _ = PartiallySigned::from_bytes(bytes, NOW);
    let u = decode(bytes)?;
    let _ = u.check_time(NOW);
    u.verify()
}

#[test]
fn no_panic_on_truncations_and_bit_flips() {
    for rec in sample_records() {
        for n in 0..rec.bytes().len() {
            assert!(swallow(&rec.bytes()[..n]).is_err());
        }
    }
    // Every single-bit flip of a listing is refused. A flip in the content that still decodes is
    // another record (another id), which the author's signature does not cover; a flip in the
    // signature leaves the id and breaks the signature. Signature checks are slow in debug builds,
    // so every flip is decoded and a spread of them is also verified.
    let rec = signed_listing();
    let content_bits = rec.content().len() * 8;
    let mut decodable = Vec::new();
    for bit in 0..rec.bytes().len() * 8 {
        let mut bytes = rec.bytes().to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        match decode(&bytes) {
            Ok(u) => {
                if bit < content_bits {
                    assert_ne!(u.id(), rec.id(), "bit {bit}");
                } else {
                    assert_eq!(u.id(), rec.id(), "bit {bit}");
                }
                decodable.push((bit, u));
            }
            Err(e) => assert!(RecordError::CODES.contains(&e.code())),
        }
    }
    assert!(decodable.len() > 1000, "{}", decodable.len());
    let step = decodable.len() / 40;
    for (bit, u) in decodable.into_iter().step_by(step) {
        assert_eq!(u.verify().unwrap_err(), RecordError::BadSignature { index: 0 }, "bit {bit}");
    }
}

#[test]
fn no_panic_on_random_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let author = pk(&alice());
    for i in 0..3000 {
        let len = (rng.next() % 700) as usize;
        let mut bytes = rng.bytes(len);
        // Half of them with a valid header, so the body decoders get exercised.
        if i % 2 == 0 && len >= HEADER_LEN {
            bytes[0] = FORMAT_VERSION;
            bytes[1] = 1 + (rng.next() % 15) as u8;
            bytes[2..34].copy_from_slice(author.as_bytes());
        }
        assert!(swallow(&bytes).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests

mod props {
    use proptest::prelude::*;

    use super::*;

    fn seed_strategy() -> impl Strategy<Value = [u8; 32]> {
        any::<[u8; 32]>()
    }

    /// One-line text: no control characters (category C excludes them, the bidi controls and the
    /// newline), within `max` bytes, with a visible first character when `min` is 1.
    fn line(min: usize, max: usize) -> BoxedStrategy<String> {
        let n = (max / 4).clamp(1, 40);
        if min == 0 {
            proptest::string::string_regex(&format!("\\PC{{0,{n}}}")).unwrap().boxed()
        } else {
            proptest::string::string_regex(&format!("[a-zA-Z0-9é€][\\PC]{{0,{}}}", n - 1)).unwrap().boxed()
        }
    }

    /// Multi-line text: also newlines and tabs.
    fn lines(max: usize) -> BoxedStrategy<String> {
        let n = (max / 4).clamp(1, 60);
        proptest::string::string_regex(&format!("(\\PC|\\n|\\t){{0,{n}}}")).unwrap().boxed()
    }

    fn slug() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,7}(-[a-z0-9]{1,7}){0,3}"
    }

    fn geohash() -> impl Strategy<Value = String> {
        "[0-9b-hjkmnp-z]{0,6}"
    }

    fn kind() -> impl Strategy<Value = Kind> {
        proptest::sample::select(Kind::ALL)
    }

    fn category() -> impl Strategy<Value = Category> {
        proptest::sample::select(Category::ALL)
    }

    fn money() -> impl Strategy<Value = Money> {
        (any::<u32>(), "[A-Z]{3}")
            .prop_map(|(amount_minor, c)| Money { amount_minor, currency: Currency(c.as_bytes().try_into().unwrap()) })
    }

    fn id() -> impl Strategy<Value = RecordId> {
        any::<[u8; 32]>().prop_map(RecordId)
    }

    fn listing(created_at: Timestamp) -> impl Strategy<Value = Listing> {
        let terms_parts = (
            proptest::option::of(1..=MAX_LOAN_DAYS),
            proptest::option::of(money()),
            lines(MAX_CONDITIONS),
            line(0, MAX_AVAILABILITY),
            line(1, MAX_IN_RETURN),
            proptest::option::of(1..=MAX_HOURS),
        );
        let times = (
            1..=MAX_LISTING_LIFETIME_SECS,
            proptest::option::of(0..2 * MAX_LISTING_LIFETIME_SECS),
            proptest::option::of(0..MAX_LISTING_LIFETIME_SECS),
        );
        (
            (any::<[u8; 16]>(), 1..=u32::MAX, kind(), category()),
            (line(1, MAX_TITLE), lines(MAX_DESCRIPTION), proptest::collection::btree_set(slug(), 0..=MAX_TAGS)),
            terms_parts,
            (slug(), geohash()),
            times,
        )
            .prop_map(
                move |(
                    (key, revision, kind, category),
                    (title, description, tags),
                    t,
                    (community, location),
                    times,
                )| {
                    let (days, deposit, conditions, availability, in_return, hours) = t;
                    let terms = Terms {
                        max_loan_days: if matches!(kind, Kind::Lend | Kind::Want) { days } else { None },
                        deposit: if matches!(kind, Kind::Lend | Kind::Share) { deposit } else { None },
                        conditions,
                        availability,
                        in_return: match kind {
                            Kind::Swap | Kind::Barter => in_return,
                            Kind::Want if days.is_some() => in_return,
                            _ => String::new(),
                        },
                        hours: if category.is_service() { hours } else { None },
                    };
                    let (lifetime, from, span) = times;
                    let available_from = from.map(|f| created_at.saturating_sub(MAX_LISTING_LIFETIME_SECS) + f);
                    let available_until = match (available_from, span) {
                        (Some(f), Some(s)) => Some(f + s),
                        (None, Some(s)) => Some(created_at + s),
                        _ => None,
                    };
                    Listing {
                        key: ListingKey(key),
                        revision,
                        kind,
                        category,
                        title,
                        description,
                        tags: tags.into_iter().collect(),
                        terms,
                        community,
                        location,
                        available_from,
                        available_until,
                        valid_until: created_at + lifetime,
                    }
                },
            )
    }

    fn profile() -> impl Strategy<Value = Profile> {
        (line(1, MAX_NAME), proptest::option::of(slug()), geohash(), lines(MAX_ABOUT), line(0, MAX_CONTACT)).prop_map(
            |(name, community, area, about, contact)| Profile {
                name,
                community: community.unwrap_or_default(),
                area,
                about,
                contact,
            },
        )
    }

    fn due_for(kind: Kind, start: Timestamp, span: Option<u64>) -> Option<Timestamp> {
        match kind {
            Kind::Lend => Some(start + span.unwrap_or(1)),
            Kind::Share => span.map(|s| start + s),
            _ => None,
        }
    }

    /// Any valid body authored by `a`, with `b` as the other party where there is one.
    fn body(a: PublicKey, b: PublicKey, created_at: Timestamp) -> BoxedStrategy<Body> {
        let note = || lines(MAX_NOTE);
        let listing_author = proptest::bool::ANY.prop_map(move |mine| if mine { a } else { b });
        prop_oneof![
            profile().prop_map(Body::Profile),
            listing(created_at).prop_map(Body::Listing),
            (any::<[u8; 16]>(), note()).prop_map(move |(k, reason)| Body::Withdrawal(Withdrawal {
                listing_author: a,
                listing_key: ListingKey(k),
                reason
            })),
            (
                (listing_author.clone(), any::<[u8; 16]>(), 1..=u32::MAX, kind()),
                (any::<u64>(), proptest::option::of(1..u64::MAX / 2)),
                (lines(MAX_MESSAGE), lines(MAX_IN_RETURN), proptest::option::of(id())),
            )
                .prop_map(move |((la, k, rev, kind), (start, span), (message, in_return, supersedes))| {
                    let start = start / 2;
                    Body::Proposal(Proposal {
                        counterparty: b,
                        listing_author: la,
                        listing_key: ListingKey(k),
                        listing_revision: rev,
                        kind,
                        start,
                        end: span.map(|s| start + s),
                        message,
                        in_return,
                        supersedes,
                    })
                }),
            (listing_author, id(), any::<[u8; 16]>(), kind(), any::<u64>(), proptest::option::of(1..u64::MAX / 2))
                .prop_map(move |(la, proposal, k, kind, start, span)| {
                    let start = start / 2;
                    Body::Agreement(Agreement {
                        counterparty: b,
                        proposal,
                        listing_author: la,
                        listing_key: ListingKey(k),
                        kind,
                        start,
                        due: due_for(kind, start, span),
                    })
                }),
            (id(), note()).prop_map(|(agreement, note)| Body::Handover(Handover { agreement, note })),
            (id(), note()).prop_map(|(agreement, note)| Body::Return(Return { agreement, note })),
            (id(), id(), proptest::sample::select(Condition::ALL), note()).prop_map(
                |(agreement, subject, condition, note)| Body::Acknowledgement(Acknowledgement {
                    agreement,
                    subject,
                    condition,
                    note
                })
            ),
            (id(), note()).prop_map(|(agreement, note)| Body::Completion(Completion { agreement, note })),
            (id(), proptest::sample::select(CancelReason::ALL), note())
                .prop_map(|(deal, reason, note)| Body::Cancellation(Cancellation { deal, reason, note })),
            (id(), any::<u64>()).prop_map(move |(agreement, new_due)| Body::Extension(Extension {
                agreement,
                counterparty: b,
                new_due
            })),
            (
                id(),
                proptest::sample::select(Rating::ALL),
                proptest::sample::subsequence(Facet::ALL, 0..=Facet::ALL.len()),
                proptest::collection::vec(proptest::sample::select(Rating::ALL), Facet::ALL.len()),
                lines(MAX_REVIEW_TEXT),
                any::<[u8; 16]>(),
            )
                .prop_map(move |(agreement, rating, facets, ratings, text, nonce)| Body::Review(Review {
                    agreement,
                    subject: b,
                    rating,
                    facets: facets.iter().zip(ratings).map(|(f, r)| FacetRating { facet: *f, rating: r }).collect(),
                    text,
                    nonce: Nonce(nonce),
                })),
            (id(), id()).prop_map(move |(agreement, review)| Body::ReviewCommitment(ReviewCommitment {
                agreement,
                subject: b,
                review
            })),
            (line(1, MAX_VOUCH_CONTEXT), 1..=MAX_VOUCH_LIFETIME_SECS).prop_map(move |(context, life)| {
                Body::Vouch(Vouch { subject: b, context, expires_at: created_at + life })
            }),
            (id(), note()).prop_map(move |(target, reason)| Body::Revocation(Revocation {
                target_author: a,
                target,
                reason
            })),
        ]
        .boxed()
    }

    /// Two different seeds, a creation time and a valid body.
    fn valid_record() -> impl Strategy<Value = ([u8; 32], [u8; 32], Timestamp, Body)> {
        (seed_strategy(), seed_strategy(), 1_000_000_000u64..4_000_000_000)
            .prop_filter("two different people", |(a, b, _)| a != b)
            .prop_flat_map(|(a, b, created_at)| {
                let pa = *Identity::from_seed(&a).public();
                let pb = *Identity::from_seed(&b).public();
                (Just(a), Just(b), Just(created_at), body(pa, pb, created_at))
            })
    }

    fn sign_with(a: &[u8; 32], b: &[u8; 32], created_at: Timestamp, body: Body) -> SignedRecord {
        let author = Identity::from_seed(a);
        if body.record_type().signature_count() == 2 {
            PartiallySigned::sign(&author, created_at, body).unwrap().countersign(&Identity::from_seed(b)).unwrap()
        } else {
            Signed::sign(&author, created_at, body).unwrap()
        }
    }

    /// A mutation of a byte string.
    #[derive(Debug, Clone)]
    enum Mutation {
        Xor(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        Truncate(usize),
        Append(Vec<u8>),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1..=u8::MAX).prop_map(|(i, x)| Mutation::Xor(i, x)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Remove),
            any::<usize>().prop_map(Mutation::Truncate),
            proptest::collection::vec(any::<u8>(), 1..130).prop_map(Mutation::Append),
        ]
    }

    fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
        let mut v = bytes.to_vec();
        let n = v.len();
        match m {
            Mutation::Xor(i, x) => v[i % n] ^= x,
            Mutation::Insert(i, b) => v.insert(i % (n + 1), *b),
            Mutation::Remove(i) => {
                v.remove(i % n);
            }
            Mutation::Truncate(i) => v.truncate(i % n),
            Mutation::Append(tail) => v.extend_from_slice(tail),
        }
        v
    }

    /// Case counts are kept small for debug builds (a signature check takes tens of milliseconds
    /// unoptimized); `PROPTEST_CASES=5000 cargo test --release -p troc-protocol` runs more.
    fn cases(debug_default: u32) -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(debug_default);
        ProptestConfig { cases, ..ProptestConfig::default() }
    }

    proptest! {
        #![proptest_config(cases(64))]

        /// Valid bodies of every type sign, decode, check and verify, and come back identical.
        #[test]
        fn valid_records_round_trip((a, b, created_at, body) in valid_record()) {
            let rec = sign_with(&a, &b, created_at, body.clone());
            let back = SignedRecord::from_bytes(rec.bytes(), created_at).unwrap();
            prop_assert_eq!(back.body(), &body);
            prop_assert_eq!(back.id(), rec.id());
            prop_assert_eq!(back.bytes(), rec.bytes());
            prop_assert_eq!(back.header(), rec.header());
            // Re-encoding the decoded body gives the same content.
            let mut w = Writer::new();
            back.header().encode(&mut w);
            back.body().encode(&mut w);
            prop_assert_eq!(&w.into_bytes()[..], back.content());
            // The id is the hash of what was signed.
            let message = signed_message(back.record_type(), back.content());
            prop_assert_eq!(back.id().0, <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&message)));
            // The body's JSON reads back.
            let json = serde_json::to_string(&body).unwrap();
            prop_assert_eq!(serde_json::from_str::<Body>(&json).unwrap(), body);
        }
    }

    proptest! {
        #![proptest_config(cases(1000))]

        /// Arbitrary bytes never panic, and never verify.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            prop_assert!(swallow(&bytes).is_err());
            let _ = SignedRecord::from_bytes(&bytes, NOW);
        }

        /// Arbitrary bodies behind a valid header.
        #[test]
        fn arbitrary_bodies_never_panic(t in 1u8..=15, tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = raw_content(FORMAT_VERSION, t, pk(&alice()).as_bytes(), NOW, |w| w.raw(&tail));
            bytes.extend_from_slice(&tail);
            let _ = swallow(&bytes);
        }
    }

    proptest! {
        #![proptest_config(cases(300))]

        /// A mutated record is refused, or is another record (another id), or the same bytes.
        #[test]
        fn mutations_are_refused_or_another_record(which in 0..RecordType::ALL.len(), m in mutation()) {
            let records = SAMPLES.with(|s| s.clone());
            let original = &records[which];
            let mutated = apply(original.bytes(), &m);
            match SignedRecord::from_bytes(&mutated, NOW) {
                Err(e) => prop_assert!(RecordError::CODES.contains(&e.code())),
                Ok(r) => prop_assert!(r.id() != original.id() || r.bytes() == original.bytes(), "{:?}", m),
            }
        }
    }

    thread_local! {
        static SAMPLES: Vec<SignedRecord> = sample_records();
    }
}

#[test]
fn id_of_bytes_is_the_record_id_without_decoding() {
    // Every type, co-signed ones included: the cheap id equals the decoded id.
    for record in sample_records() {
        assert_eq!(id_of_bytes(record.bytes()), Some(record.id()), "{}", record.record_type());
    }
    let listing = signed_listing();
    // Bytes that cannot be a record have no id.
    assert_eq!(id_of_bytes(&listing.bytes()[..HEADER_LEN - 1]), None);
    let mut bad_version = listing.bytes().to_vec();
    bad_version[0] = 9;
    assert_eq!(id_of_bytes(&bad_version), None);
    let mut bad_type = listing.bytes().to_vec();
    bad_type[1] = 0xee;
    assert_eq!(id_of_bytes(&bad_type), None);
    assert_eq!(id_of_bytes(&vec![1u8; MAX_RECORD_BYTES + 1]), None);
}
