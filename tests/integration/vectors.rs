//! The golden test vectors (`docs/test-vectors.json`), in both directions, and the specification
//! (`docs/protocol.md`) against the code.
//!
//! - The file is exactly what the generator (`troc_tests::vector_gen`) produces, so it cannot drift.
//! - Every valid vector is produced byte for byte by signing its body, and accepted from its bytes.
//! - Every invalid vector is refused with exactly its code.
//! - The Python implementation written from the specification alone agrees with every vector.
//! - The tables of the specification (limits, codes, enumerations) match the code.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use troc_protocol::limits::*;
use troc_protocol::*;

const VECTORS: &str = "docs/test-vectors.json";
const SPEC: &str = "docs/protocol.md";
const PYTHON_REFERENCE: &str = "docs/reference/troc_records.py";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn vectors() -> Value {
    serde_json::from_str(&read(VECTORS)).expect("docs/test-vectors.json is JSON")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key].as_array().unwrap_or_else(|| panic!("`{key}` is a list"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("`{key}` is a string in {v}"))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("`{key}` is a number in {v}"))
}

fn unhex(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap_or_else(|e| panic!("`{key}` is hex: {e}"))
}

fn seed(signer: &Value) -> [u8; 32] {
    unhex(signer, "seed").try_into().expect("a 32-byte seed")
}

/// Writes `docs/test-vectors.json` from the generator. Run after a deliberate format change:
/// `cargo test -p troc-tests --test integration vectors::regenerate -- --ignored`.
#[test]
#[ignore = "writes docs/test-vectors.json; run on purpose"]
fn regenerate() {
    std::fs::write(root().join(VECTORS), troc_tests::test_vectors_json()).expect("write the vectors");
}

#[test]
fn vector_file_is_what_the_generator_produces() {
    let generated: Value = serde_json::from_str(&troc_tests::test_vectors_json()).expect("generator output is JSON");
    let file = vectors();
    if generated != file {
        // Name the first vector that differs, for a readable failure.
        for key in ["valid", "invalid"] {
            for (g, f) in list(&generated, key).iter().zip(list(&file, key)) {
                assert_eq!(g, f, "{key} vector {} differs from the generator", g["name"]);
            }
            assert_eq!(list(&generated, key).len(), list(&file, key).len(), "number of {key} vectors");
        }
        panic!(
            "docs/test-vectors.json is not what the generator produces; if the change is deliberate, run \
             `cargo test -p troc-tests --test integration vectors::regenerate -- --ignored`"
        );
    }
}

#[test]
fn generator_is_deterministic() {
    assert_eq!(troc_tests::test_vectors_json(), troc_tests::test_vectors_json());
}

#[test]
fn keys_derive_from_seeds() {
    let v = vectors();
    let keys = list(&v, "keys");
    assert_eq!(keys.len(), 3);
    for k in keys {
        let id = Identity::from_seed(&seed(k));
        assert_eq!(s(k, "public_key"), hex::encode(id.public().as_bytes()), "{}", k["name"]);
        assert_eq!(s(k, "peer_id"), id.peer_id().to_base58(), "{}", k["name"]);
        assert_eq!(s(k, "short"), id.public().short(), "{}", k["name"]);
        assert_eq!(s(k, "short"), &s(k, "peer_id")[8..16]);
        assert!(s(k, "peer_id").starts_with("12D3KooW"));
    }
}

/// (a) Signing each valid vector's body with its seeds at its created_at gives exactly its bytes.
#[test]
fn valid_vectors_are_reproduced_by_signing() {
    let v = vectors();
    assert!(list(&v, "valid").len() >= 15);
    for vec in list(&v, "valid") {
        let name = s(vec, "name");
        let body: Body = serde_json::from_value(vec["body"].clone()).unwrap_or_else(|e| panic!("{name}: body: {e}"));
        assert_eq!(body.record_type().name(), s(vec, "type"), "{name}");
        let signers: Vec<Identity> = list(vec, "signers").iter().map(|k| Identity::from_seed(&seed(k))).collect();
        for (id, k) in signers.iter().zip(list(vec, "signers")) {
            assert_eq!(s(k, "public_key"), hex::encode(id.public().as_bytes()), "{name}");
            assert_eq!(s(k, "peer_id"), id.peer_id().to_base58(), "{name}");
        }
        assert_eq!(signers.len(), body.record_type().signature_count(), "{name}: signer count");
        let created_at = n(vec, "created_at");
        let rec: SignedRecord = if signers.len() == 1 {
            Signed::sign(&signers[0], created_at, body).unwrap_or_else(|e| panic!("{name}: {e}"))
        } else {
            let partial =
                PartiallySigned::sign(&signers[0], created_at, body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hex::encode(partial.to_bytes()), s(vec, "partially_signed_hex"), "{name}: partial bytes");
            partial.countersign(&signers[1]).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        assert_eq!(hex::encode(rec.content()), s(vec, "content_hex"), "{name}: content");
        assert_eq!(
            hex::encode(signed_message(rec.record_type(), rec.content())),
            s(vec, "signed_message_hex"),
            "{name}: signed message"
        );
        assert_eq!(rec.id().to_string(), s(vec, "id"), "{name}: id");
        let sigs: Vec<String> = rec.signatures().map(hex::encode).collect();
        let expected: Vec<&str> = list(vec, "signatures").iter().map(|x| x.as_str().expect("hex")).collect();
        assert_eq!(sigs, expected, "{name}: signatures");
        assert_eq!(hex::encode(rec.bytes()), s(vec, "bytes_hex"), "{name}: bytes");
        assert_eq!(rec.created_at(), created_at, "{name}");
    }
}

/// (b) Each valid vector's bytes decode, check and verify, with its id, author and body.
#[test]
fn valid_vectors_are_accepted_from_bytes() {
    let v = vectors();
    for vec in list(&v, "valid") {
        let name = s(vec, "name");
        let bytes = unhex(vec, "bytes_hex");
        let rec = SignedRecord::from_bytes(&bytes, n(vec, "now")).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rec.id().to_string(), s(vec, "id"), "{name}: id");
        let author = &list(vec, "signers")[0];
        assert_eq!(hex::encode(rec.author().as_bytes()), s(author, "public_key"), "{name}: author");
        assert_eq!(rec.author().to_peer_id().to_base58(), s(author, "peer_id"), "{name}: author");
        assert_eq!(rec.record_type().name(), s(vec, "type"), "{name}: type");
        assert_eq!(rec.created_at(), n(vec, "created_at"), "{name}");
        assert_eq!(serde_json::to_value(rec.body()).expect("serialize"), vec["body"], "{name}: body JSON");
        if let Some(cosigner) = list(vec, "signers").get(1) {
            let c = rec.cosigner().unwrap_or_else(|| panic!("{name}: a co-signed record has a cosigner"));
            assert_eq!(hex::encode(c.as_bytes()), s(cosigner, "public_key"), "{name}: cosigner");
        }
        // The JSON view carries the same facts.
        let json = serde_json::to_value(rec.to_json()).expect("serialize");
        assert_eq!(json["id"], vec["id"], "{name}");
        assert_eq!(json["type"], vec["type"], "{name}");
        assert_eq!(json["version"], 1, "{name}");
        assert_eq!(json["author"], author["peer_id"], "{name}");
        assert_eq!(json["created_at"], vec["created_at"], "{name}");
        assert_eq!(json["body"], vec["body"], "{name}");
        assert_eq!(json["signatures"], vec["signatures"], "{name}");
        assert_eq!(json["bytes"], vec["bytes_hex"], "{name}");
        let keys: Vec<&String> = json.as_object().expect("an object").keys().collect();
        assert_eq!(keys.len(), 8, "{name}: JSON view fields {keys:?}");
        // A co-signed record's partially signed form is accepted as such.
        if let Some(partial) = vec.get("partially_signed_hex") {
            let p =
                PartiallySigned::from_bytes(&hex::decode(partial.as_str().expect("hex")).expect("hex"), n(vec, "now"))
                    .unwrap_or_else(|e| panic!("{name}: partial: {e}"));
            assert_eq!(p.id().to_string(), s(vec, "id"), "{name}: partial id");
        }
    }
}

/// (c) Each invalid vector is refused, by decode → check_time → verify, with exactly its code.
#[test]
fn invalid_vectors_are_refused_with_their_code() {
    let v = vectors();
    let mut wrong = Vec::new();
    for vec in list(&v, "invalid") {
        let name = s(vec, "name");
        let bytes = unhex(vec, "bytes_hex");
        let now = n(vec, "now");
        let result = decode(&bytes).and_then(|u| {
            u.check_time(now)?;
            u.verify()
        });
        let got = match &result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        if got != s(vec, "code") {
            wrong.push(format!("{name}: expected {}, got {got} ({result:?})", s(vec, "code")));
        }
        // The one-call form agrees.
        let one_call = SignedRecord::from_bytes(&bytes, now).map(|_| ()).map_err(|e| e.code());
        assert_eq!(one_call, Err(s(vec, "code")), "{name}: from_bytes");
    }
    assert!(wrong.is_empty(), "invalid vectors refused with the wrong code:\n{}", wrong.join("\n"));
}

#[test]
fn vectors_cover_every_type_and_every_reachable_code() {
    let v = vectors();
    for t in RecordType::ALL {
        assert!(list(&v, "valid").iter().any(|x| x["type"] == t.name()), "no valid {t} vector");
    }
    let co_signed = list(&v, "valid").iter().filter(|x| list(x, "signers").len() == 2).count();
    assert!(co_signed >= 2, "the agreement and the extension are co-signed");
    // author_mismatch needs context: an expected author.
    let unreachable = ["author_mismatch"];
    for code in RecordError::CODES {
        let has = list(&v, "invalid").iter().any(|x| x["code"] == *code);
        assert_eq!(has, !unreachable.contains(code), "code {code}");
        if unreachable.contains(code) {
            assert!(s(&v, "description").contains(code), "the description says why {code} has no vector");
        }
    }
    let mut names: Vec<&str> = list(&v, "valid").iter().chain(list(&v, "invalid")).map(|x| s(x, "name")).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "vector names are unique");
}

/// A bit flipped in any byte of a valid record makes it refused: the signatures cover every byte of
/// the content, and a changed signature does not verify. (One bit per byte, a different bit in each
/// byte, to keep the test fast in debug builds.)
#[test]
fn a_flipped_bit_anywhere_is_refused() {
    let v = vectors();
    for name in ["profile_minimal", "agreement"] {
        let vec = list(&v, "valid").iter().find(|x| x["name"] == name).expect("the vector exists");
        let bytes = unhex(vec, "bytes_hex");
        let now = n(vec, "now");
        assert!(SignedRecord::from_bytes(&bytes, now).is_ok());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1 << (i % 8);
            assert!(SignedRecord::from_bytes(&b, now).is_err(), "{name}: flipping a bit of byte {i} is accepted");
        }
    }
}

/// The independent Python implementation, written from docs/protocol.md alone, agrees with the vectors.
#[test]
fn python_reference_implementation_agrees() {
    let out = Command::new("python3").arg(PYTHON_REFERENCE).arg(VECTORS).current_dir(root()).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run python3 ({e}). This test needs Python 3 and its `cryptography` package: install python3, \
             then `pip install cryptography`."
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{PYTHON_REFERENCE} {VECTORS} failed ({}). If it says the cryptography module is missing: \
         `pip install cryptography`.\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("valid vectors: all"), "unexpected output:\n{stdout}");
    // The script only requires some codes to agree; here every code must, so that any rule the
    // specification states differently from the code shows up.
    assert!(
        stdout.contains("invalid vectors: all"),
        "the Python implementation refuses some invalid vectors with another code than troc: the \
         specification and the code disagree on the order or the code of a rule:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// The specification's tables against the code

/// The rows of the table that follows `<!-- table:NAME -->` in the spec, cells trimmed, backticks removed.
fn spec_table(name: &str) -> Vec<Vec<String>> {
    let spec = read(SPEC);
    let marker = format!("<!-- table:{name} -->");
    let start = spec.find(&marker).unwrap_or_else(|| panic!("{SPEC} has no {marker}"));
    let rows: Vec<Vec<String>> = spec[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with('|'))
        .skip(2) // header and separator
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().replace('`', "")).collect())
        .collect();
    assert!(!rows.is_empty(), "{SPEC}: table {name} is empty");
    rows
}

fn check_enum(table: &str, expected: Vec<(u8, &str)>) {
    let rows = spec_table(table);
    let got: Vec<(u8, String)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap_or_else(|_| panic!("{table}: code {:?}", r[0])), r[1].clone()))
        .collect();
    let expected: Vec<(u8, String)> = expected.into_iter().map(|(c, s)| (c, s.to_owned())).collect();
    assert_eq!(got, expected, "{SPEC}: table {table}");
}

#[test]
fn spec_enumerations_match_the_code() {
    check_enum("record-types", RecordType::ALL.iter().map(|t| (t.code(), t.name())).collect());
    for row in spec_table("record-types") {
        let t = RecordType::from_code(row[0].parse().expect("a code")).expect("a type");
        assert_eq!(row[2], String::from_utf8_lossy(t.domain_prefix()).replace('\0', "\\0"), "prefix of {t}");
        assert_eq!(row[3], t.signature_count().to_string(), "signatures of {t}");
        assert_eq!(row[4], if t.is_public() { "public" } else { "private" }, "visibility of {t}");
    }
    check_enum("kind", Kind::ALL.iter().map(|x| (x.code(), x.as_str())).collect());
    check_enum("category", Category::ALL.iter().map(|x| (x.code(), x.as_str())).collect());
    for row in spec_table("category") {
        let c = Category::from_code(row[0].parse().expect("a code")).expect("a category");
        assert_eq!(row[2], if c.is_service() { "service" } else { "thing" }, "{c}");
    }
    check_enum("rating", Rating::ALL.iter().map(|x| (x.code(), x.as_str())).collect());
    check_enum("facet", Facet::ALL.iter().map(|x| (x.code(), x.as_str())).collect());
    check_enum("cancel-reason", CancelReason::ALL.iter().map(|x| (x.code(), x.as_str())).collect());
    check_enum("condition", Condition::ALL.iter().map(|x| (x.code(), x.as_str())).collect());
}

#[test]
fn spec_limits_match_limits_rs() {
    let expected: Vec<(&str, u64)> = vec![
        ("MAX_RECORD_BYTES", MAX_RECORD_BYTES as u64),
        ("MAX_CLOCK_SKEW_SECS", MAX_CLOCK_SKEW_SECS),
        ("MAX_LISTING_LIFETIME_SECS", MAX_LISTING_LIFETIME_SECS),
        ("MAX_VOUCH_LIFETIME_SECS", MAX_VOUCH_LIFETIME_SECS),
        ("MAX_GEOHASH_LEN", MAX_GEOHASH_LEN as u64),
        ("MAX_NAME", MAX_NAME as u64),
        ("MAX_COMMUNITY", MAX_COMMUNITY as u64),
        ("MAX_ABOUT", MAX_ABOUT as u64),
        ("MAX_CONTACT", MAX_CONTACT as u64),
        ("MAX_TITLE", MAX_TITLE as u64),
        ("MAX_DESCRIPTION", MAX_DESCRIPTION as u64),
        ("MAX_TAGS", MAX_TAGS as u64),
        ("MAX_TAG", MAX_TAG as u64),
        ("MAX_CONDITIONS", MAX_CONDITIONS as u64),
        ("MAX_AVAILABILITY", MAX_AVAILABILITY as u64),
        ("MAX_IN_RETURN", MAX_IN_RETURN as u64),
        ("MAX_LOAN_DAYS", MAX_LOAN_DAYS as u64),
        ("MAX_HOURS", MAX_HOURS as u64),
        ("MAX_MESSAGE", MAX_MESSAGE as u64),
        ("MAX_NOTE", MAX_NOTE as u64),
        ("MAX_REVIEW_TEXT", MAX_REVIEW_TEXT as u64),
        ("MAX_FACETS", MAX_FACETS as u64),
        ("MAX_VOUCH_CONTEXT", MAX_VOUCH_CONTEXT as u64),
    ];
    let rows = spec_table("limits");
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap_or_else(|_| panic!("limit {} is a number: {:?}", r[0], r[1]))))
        .collect();
    let expected: Vec<(String, u64)> = expected.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(got, expected, "{SPEC}: the limits table and protocol/src/limits.rs disagree");
}

#[test]
fn spec_lists_every_rejection_code() {
    let rows = spec_table("codes");
    let got: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got, RecordError::CODES, "{SPEC}: the rejection codes table");
}

/// The worked example's annotated bytes are the bytes of its vector.
#[test]
fn spec_worked_example_is_a_vector() {
    let spec = read(SPEC);
    let marker = "<!-- example:listing_lend_full -->";
    let start = spec.find(marker).unwrap_or_else(|| panic!("{SPEC} has no {marker}"));
    let block = spec[start..].split("```").nth(1).expect("a code block after the marker");
    let hex: String = block
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| t.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let v = vectors();
    let vec = list(&v, "valid").iter().find(|x| x["name"] == "listing_lend_full").expect("the vector exists");
    assert_eq!(hex, s(vec, "bytes_hex"), "{SPEC}: the worked example's bytes");
}
