//! The check of the `records` fuzz target (`fuzz/fuzz_targets/records.rs`), here in the library so
//! that the target and the corpus replay test (`tests.rs`, `fuzz_corpus_replays`) run the same code.
//!
//! [`records`] feeds arbitrary bytes to everything a peer does with bytes from outside: `decode`,
//! `check_time`, `verify`, `verify_batch` and `PartiallySigned::from_bytes`, and checks the
//! invariants that must hold on success. Any panic is a finding. Not part of the crate's API.

use crate::*;

/// A fixed clock: the `created_at` of the seed corpus.
pub const NOW: Timestamp = 1_700_000_000;

/// An identity that re-signs decoded bodies to check that their encoding is canonical.
fn resigner() -> &'static Identity {
    static ID: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    ID.get_or_init(|| Identity::from_seed(&[0x5a; 32]))
}

/// One input: see the module documentation.
pub fn records(data: &[u8]) {
    if let Ok(unverified) = decode(data) {
        check_decoded(data, unverified);
    }
    if let Ok(partial) = PartiallySigned::from_bytes(data, NOW) {
        // What was received is exactly what the author sent: content and the author's signature.
        assert_eq!(partial.to_bytes(), data);
        assert_eq!(partial.header().record_type.signature_count(), 2);
        let complete = decode(&[data, &[0u8; 64][..]].concat()).expect("a partially signed record decodes");
        assert_eq!(complete.id(), partial.id());
    }
}

fn check_decoded(data: &[u8], unverified: Unverified) {
    assert_eq!(unverified.len(), data.len());
    let header = *unverified.header();
    assert_eq!(header.version, FORMAT_VERSION);
    assert_eq!(header.record_type, unverified.body().record_type());
    let body = unverified.body().clone();

    // The JSON view of the body reads back as the same body.
    let json = serde_json::to_string(&body).expect("a body serializes");
    let back: Body = serde_json::from_str(&json).expect("a body's JSON reads back");
    assert_eq!(back, body);

    // Strict decoding means one encoding per content: re-encoding the decoded body (signed by
    // another key at the same time) gives the same body bytes. Bodies that name their author may be
    // refused for the other key (self reference, not own record): that is fine.
    let body_bytes = {
        let ours = resign(&header, body.clone());
        ours.map(|content| content[42..].to_vec())
    };
    if let Some(ours) = body_bytes {
        let sigs = 64 * header.record_type.signature_count();
        assert_eq!(&data[42..data.len() - sigs], &ours[..], "re-encoding differs");
    }

    let time = unverified.check_time(NOW);
    let single = unverified.clone().verify();
    let batch = verify_batch(vec![unverified.clone(), unverified]);
    assert_eq!(batch.len(), 2);
    for b in &batch {
        assert_eq!(
            b.as_ref().map(|r| r.id()).map_err(|e| e.code()),
            single.as_ref().map(|r| r.id()).map_err(|e| e.code())
        );
    }
    if let Ok(signed) = single {
        assert_eq!(signed.bytes(), data);
        let again = decode(signed.bytes()).expect("verified bytes decode");
        assert_eq!(again.id(), signed.id());
        assert_eq!(signed.check_time(NOW).map_err(|e| e.code()), time.map_err(|e| e.code()));
        let json = serde_json::to_value(signed.to_json()).expect("to_json serializes");
        assert_eq!(json["id"], serde_json::Value::String(signed.id().to_string()));
        assert_eq!(signed.signatures().count(), signed.record_type().signature_count());
        let t = signed.record_type();
        let any = match signed.downcast::<Listing>() {
            Ok(l) => {
                assert_eq!(t, RecordType::Listing);
                l.into_any()
            }
            Err(other) => other,
        };
        assert_eq!(any.bytes(), data);
    }
}

/// The content of `body` signed by the resigner at the header's time, if the rules allow it.
fn resign(header: &Header, body: Body) -> Option<Vec<u8>> {
    let id = resigner();
    if header.record_type.signature_count() == 2 {
        PartiallySigned::sign(id, header.created_at, body).ok().map(|p| {
            let bytes = p.to_bytes();
            bytes[..bytes.len() - 64].to_vec()
        })
    } else {
        Signed::sign(id, header.created_at, body).ok().map(|s| s.content().to_vec())
    }
}
