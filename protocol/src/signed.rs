//! Signed records: the only way to hold a record's content is through [`Signed<T>`], and the only ways
//! to get one are [`Signed::sign`] (our own records), [`Unverified::verify`] / [`verify_batch`]
//! (everyone else's), and [`PartiallySigned::countersign`] (co-signed records). Its fields are private,
//! so "has this been verified?" is never a question a caller has to remember.
//!
//! The pipeline for bytes from outside, cheapest check first, signature last:
//! 1. [`decode`]: size limit, version, type, header keys (valid, canonical, not weak), the body in
//!    its exact field order, the signature count, then every stateless rule of the type. Computes the
//!    id (SHA-256 of the domain prefix and content).
//! 2. [`Unverified::check_time`]: the rules that need the clock (not from the future, not expired).
//! 3. [`Unverified::verify`]: `verify_strict` on every signature; or [`verify_batch`] for many records.

use std::sync::{Arc, LazyLock};

use ed25519_dalek::Signature;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::body::{Body, HEADER_LEN, Header, RecordBody, RecordType, decode_body, sealed::Codec};
use crate::codec::{Reader, Writer};
use crate::error::RecordError;
use crate::keys::{Identity, PublicKey};
use crate::limits::{MAX_CLOCK_SKEW_SECS, MAX_RECORD_BYTES};
use crate::types::{RecordId, Timestamp};

/// Length of one ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A record whose signatures have been verified (or that we signed ourselves).
#[derive(Clone)]
pub struct Signed<T = Body> {
    bytes: Arc<[u8]>,
    content_len: usize,
    id: RecordId,
    header: Header,
    body: T,
}

/// A verified record of any type.
pub type SignedRecord = Signed<Body>;

impl<T> Signed<T> {
    /// The record's id: SHA-256 of its domain prefix and content.
    pub fn id(&self) -> RecordId {
        self.id
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn author(&self) -> &PublicKey {
        &self.header.author
    }

    pub fn created_at(&self) -> Timestamp {
        self.header.created_at
    }

    pub fn record_type(&self) -> RecordType {
        self.header.record_type
    }

    pub fn body(&self) -> &T {
        &self.body
    }

    /// The exact bytes of the record as sent and stored: content, then signatures.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes as a shared buffer (cheap to clone).
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        Arc::clone(&self.bytes)
    }

    /// The content: header and body, without signatures.
    pub fn content(&self) -> &[u8] {
        &self.bytes[..self.content_len]
    }

    /// The signatures, in order (author first).
    pub fn signatures(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes[self.content_len..].chunks_exact(SIGNATURE_LEN)
    }

    /// The second signer of a co-signed record (agreement, extension).
    pub fn cosigner(&self) -> Option<PublicKey>
    where
        T: RecordBody,
    {
        self.body.cosigner().copied()
    }

    /// Rechecks the rules that depend on the clock, e.g. before showing or forwarding an old record.
    pub fn check_time(&self, now: Timestamp) -> Result<(), RecordError>
    where
        T: RecordBody,
    {
        time_rules(&self.header, self.body.expires_at(), now)
    }
}

impl<T: RecordBody> Signed<T> {
    /// Signs a body as `identity`, at `created_at`. Checks every stateless rule first, so we never
    /// sign a record others would refuse. Co-signed types (agreement, extension) are started with
    /// [`PartiallySigned::sign`] instead.
    pub fn sign(identity: &Identity, created_at: Timestamp, body: T) -> Result<Self, RecordError> {
        let need = body.record_type().signature_count();
        if need != 1 {
            return Err(RecordError::MissingSignature { have: 1, need });
        }
        let (content, header, message) = prepare(identity, created_at, &body)?;
        let sig = identity.sign_message(&message);
        let id = id_of(&message);
        Ok(Signed::assemble(content, &[sig], id, header, body))
    }

    fn assemble(content: Vec<u8>, sigs: &[[u8; 64]], id: RecordId, header: Header, body: T) -> Self {
        let content_len = content.len();
        let mut bytes = content;
        for s in sigs {
            bytes.extend_from_slice(s);
        }
        Signed { bytes: bytes.into(), content_len, id, header, body }
    }

    /// Forgets the body's type.
    pub fn into_any(self) -> SignedRecord {
        Signed {
            bytes: self.bytes,
            content_len: self.content_len,
            id: self.id,
            header: self.header,
            body: self.body.into_body(),
        }
    }

    /// The JSON view of this record (see [`RecordJson`]).
    pub fn to_json(&self) -> RecordJson<'_, T> {
        RecordJson {
            id: self.id,
            record_type: self.header.record_type,
            version: self.header.version,
            author: self.header.author,
            created_at: self.header.created_at,
            body: &self.body,
            signatures: self.signatures().map(hex::encode).collect(),
            bytes: hex::encode(&self.bytes),
        }
    }
}

impl SignedRecord {
    /// Decodes, checks and verifies bytes from outside in one call.
    pub fn from_bytes(bytes: &[u8], now: Timestamp) -> Result<Self, RecordError> {
        let unverified = decode(bytes)?;
        unverified.check_time(now)?;
        unverified.verify()
    }

    /// The typed record, or this one back if it is of another type.
    #[allow(clippy::result_large_err)] // the Err is the input handed back, not an error
    pub fn downcast<T: RecordBody>(self) -> Result<Signed<T>, SignedRecord> {
        let Signed { bytes, content_len, id, header, body } = self;
        match T::from_body(body) {
            Ok(body) => Ok(Signed { bytes, content_len, id, header, body }),
            Err(body) => Err(Signed { bytes, content_len, id, header, body }),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("id", &self.id)
            .field("type", &self.header.record_type)
            .field("author", &self.header.author)
            .field("created_at", &self.header.created_at)
            .field("body", &self.body)
            .finish()
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<T> Eq for Signed<T> {}

/// The JSON view of a record, for people and bots. A view only: it is never signed or hashed; the
/// `bytes` field carries the exact signed record for anyone who wants to verify it themselves.
#[derive(Debug, Serialize)]
pub struct RecordJson<'a, T> {
    pub id: RecordId,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    pub version: u8,
    pub author: PublicKey,
    pub created_at: Timestamp,
    pub body: &'a T,
    pub signatures: Vec<String>,
    pub bytes: String,
}

// ---------------------------------------------------------------------------------------------
// Encoding and hashing

fn encode_content(header: &Header, body: &impl Codec) -> Vec<u8> {
    let mut w = Writer::new();
    header.encode(&mut w);
    body.encode(&mut w);
    w.into_bytes()
}

/// The bytes a signature covers: the type's domain prefix, then the content.
pub fn signed_message(record_type: RecordType, content: &[u8]) -> Vec<u8> {
    let mut m = record_type.domain_prefix().to_vec();
    m.extend_from_slice(content);
    m
}

fn id_of(message: &[u8]) -> RecordId {
    RecordId(Sha256::digest(message).into())
}

/// The id of a record of type `t` with this content: SHA-256 of the domain prefix and the content.
fn content_id(t: RecordType, content: &[u8]) -> RecordId {
    let mut hasher = Sha256::new();
    hasher.update(t.domain_prefix());
    hasher.update(content);
    RecordId(hasher.finalize().into())
}

/// The id that record bytes carry, computed without decoding or verifying them: the content is the
/// bytes less the signatures their type carries. For every valid record this is its id; for bytes
/// that are not a valid record it is only a name for them (they will be refused when decoded).
/// `None` when the bytes cannot be a record at all (too short or too long, unknown version or type).
///
/// Cheap (one SHA-256): for naming gossip messages and fetched records before they are decoded.
pub fn id_of_bytes(bytes: &[u8]) -> Option<RecordId> {
    if bytes.len() < HEADER_LEN || bytes.len() > MAX_RECORD_BYTES || bytes[0] != crate::body::FORMAT_VERSION {
        return None;
    }
    let t = RecordType::from_code(bytes[1]).ok()?;
    let content_len = bytes.len().checked_sub(t.signature_count() * SIGNATURE_LEN)?;
    if content_len < HEADER_LEN {
        return None;
    }
    Some(content_id(t, &bytes[..content_len]))
}

/// Checks and encodes a body about to be signed: returns content, header and signed message.
fn prepare<T: RecordBody>(
    identity: &Identity,
    created_at: Timestamp,
    body: &T,
) -> Result<(Vec<u8>, Header, Vec<u8>), RecordError> {
    let header = Header {
        version: crate::body::FORMAT_VERSION,
        record_type: body.record_type(),
        author: *identity.public(),
        created_at,
    };
    body.check(&header)?;
    let content = encode_content(&header, body);
    let total = content.len() + SIGNATURE_LEN * header.record_type.signature_count();
    if total > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { len: total, max: MAX_RECORD_BYTES });
    }
    let message = signed_message(header.record_type, &content);
    Ok((content, header, message))
}

fn time_rules(header: &Header, expiry: Option<Timestamp>, now: Timestamp) -> Result<(), RecordError> {
    if header.created_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(RecordError::FromFuture { created_at: header.created_at, now, max_skew: MAX_CLOCK_SKEW_SECS });
    }
    match expiry {
        Some(at) if at <= now => Err(RecordError::Expired { expired_at: at, now }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding and verification

/// A record decoded and checked, whose signatures are not verified yet. It cannot be stored or
/// used: the only thing to do with it is to verify it (or drop it).
#[derive(Debug, Clone)]
pub struct Unverified {
    bytes: Arc<[u8]>,
    content_len: usize,
    id: RecordId,
    header: Header,
    body: Body,
}

impl Unverified {
    pub fn id(&self) -> RecordId {
        self.id
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The body, for routing decisions before verification (never act on it unverified).
    pub fn body(&self) -> &Body {
        &self.body
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Checks the rules that need the clock: `created_at` at most [`MAX_CLOCK_SKEW_SECS`] ahead of
    /// `now`; a listing's `valid_until` and a vouch's `expires_at` after `now`.
    pub fn check_time(&self, now: Timestamp) -> Result<(), RecordError> {
        time_rules(&self.header, self.body.expires_at(), now)
    }

    fn signers(&self) -> Vec<&PublicKey> {
        let mut v = vec![&self.header.author];
        v.extend(self.body.cosigner());
        v
    }

    fn message(&self) -> Vec<u8> {
        signed_message(self.header.record_type, &self.bytes[..self.content_len])
    }

    fn signature(&self, i: usize) -> Signature {
        let start = self.content_len + i * SIGNATURE_LEN;
        let mut s = [0u8; 64];
        s.copy_from_slice(&self.bytes[start..start + SIGNATURE_LEN]);
        Signature::from_bytes(&s)
    }

    /// Verifies every signature with `verify_strict`.
    pub fn verify(self) -> Result<SignedRecord, RecordError> {
        let message = self.message();
        for (i, signer) in self.signers().into_iter().enumerate() {
            signer
                .verifying_key()
                .verify_strict(&message, &self.signature(i))
                .map_err(|_| RecordError::BadSignature { index: i })?;
        }
        Ok(self.into_signed())
    }

    /// Verifies, and also requires the author to be `expected` (e.g. the peer a deal message came
    /// from).
    pub fn verify_from(self, expected: &PublicKey) -> Result<SignedRecord, RecordError> {
        if &self.header.author != expected {
            return Err(RecordError::AuthorMismatch {
                expected: expected.to_string(),
                found: self.header.author.to_string(),
            });
        }
        self.verify()
    }

    fn into_signed(self) -> SignedRecord {
        Signed { bytes: self.bytes, content_len: self.content_len, id: self.id, header: self.header, body: self.body }
    }
}

/// Decodes and checks a record's bytes (everything but the clock and the signatures).
pub fn decode(bytes: &[u8]) -> Result<Unverified, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { len: bytes.len(), max: MAX_RECORD_BYTES });
    }
    if bytes.len() < HEADER_LEN {
        // Report version and type problems even on a short record: they say more than "truncated".
        if let Some(&v) = bytes.first()
            && v != crate::body::FORMAT_VERSION
        {
            return Err(RecordError::UnknownVersion(v));
        }
        if let Some(&t) = bytes.get(1) {
            RecordType::from_code(t)?;
        }
        return Err(RecordError::malformed(bytes.len(), "shorter than a record header"));
    }
    let mut r = Reader::new(bytes);
    let header = Header::decode(&mut r)?;
    let body = decode_body(header.record_type, &mut r)?;
    let content_len = r.position();
    let sig_bytes = r.remaining();
    if !sig_bytes.is_multiple_of(SIGNATURE_LEN) {
        return Err(RecordError::malformed(content_len, "signature section is not a whole number of signatures"));
    }
    let have = sig_bytes / SIGNATURE_LEN;
    let need = header.record_type.signature_count();
    if have < need {
        return Err(RecordError::MissingSignature { have, need });
    }
    if have > need {
        return Err(RecordError::malformed(content_len + need * SIGNATURE_LEN, "more signatures than the type has"));
    }
    body.check(&header)?;
    let id = content_id(header.record_type, &bytes[..content_len]);
    Ok(Unverified { bytes: bytes.into(), content_len, id, header, body })
}

/// The encodings of points of small order, with the sign bit cleared: `verify_strict` refuses a
/// signature whose R is one of them, and batch verification does not look, so we do.
static SMALL_ORDER_Y: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    curve25519_dalek::constants::EIGHT_TORSION
        .iter()
        .map(|p| {
            let mut y = p.compress().to_bytes();
            y[31] &= 0x7f;
            y
        })
        .collect()
});

/// p = 2^255 - 19, little-endian: a y coordinate at or above it is a non-canonical encoding.
const FIELD_P: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// Would `verify_strict` refuse this R for its encoding alone? Canonical encodings only (strict
/// compares R's bytes with the recomputed, canonical R), and no point of small order.
fn strict_rejects_r(r: &[u8]) -> bool {
    let mut y = [0u8; 32];
    y.copy_from_slice(&r[..32]);
    y[31] &= 0x7f;
    // Compare as little-endian numbers: is y >= p?
    let non_canonical = y.iter().rev().cmp(FIELD_P.iter().rev()) != std::cmp::Ordering::Less;
    non_canonical || SMALL_ORDER_Y.contains(&y)
}

/// Verifies many records at once with ed25519 batch verification, falling back to `verify_strict`
/// one by one when the batch fails, so each record gets its own verdict. Results are in input order.
///
/// Batch verification checks the same equation with random weights. Before it, each signature's R
/// is held to `verify_strict`'s extra rules (canonical, not of small order), so the two agree on
/// everything an honest or a careless signer can produce (see `docs/protocol.md`, "Batch
/// verification", for the one residual case).
pub fn verify_batch(records: Vec<Unverified>) -> Vec<Result<SignedRecord, RecordError>> {
    if records.len() < 2 {
        return records.into_iter().map(Unverified::verify).collect();
    }
    let messages: Vec<Vec<u8>> = records.iter().map(Unverified::message).collect();
    let mut msgs: Vec<&[u8]> = Vec::new();
    let mut sigs: Vec<Signature> = Vec::new();
    let mut keys = Vec::new();
    let mut precheck_failed = false;
    for (rec, m) in records.iter().zip(&messages) {
        for (i, signer) in rec.signers().into_iter().enumerate() {
            let sig = rec.signature(i);
            if strict_rejects_r(&sig.r_bytes()[..]) {
                precheck_failed = true;
            }
            msgs.push(m);
            sigs.push(sig);
            keys.push(*signer.verifying_key());
        }
    }
    if !precheck_failed && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        return records.into_iter().map(|r| Ok(r.into_signed())).collect();
    }
    records.into_iter().map(Unverified::verify).collect()
}

// ---------------------------------------------------------------------------------------------
// Co-signed records

/// A co-signed record (agreement, extension) that carries only its author's signature so far. The
/// author sends it to the counterparty, who checks it and adds the second signature.
#[derive(Clone)]
pub struct PartiallySigned<T> {
    content: Vec<u8>,
    author_sig: [u8; 64],
    id: RecordId,
    header: Header,
    body: T,
}

impl<T: RecordBody> PartiallySigned<T> {
    /// The author signs first.
    pub fn sign(identity: &Identity, created_at: Timestamp, body: T) -> Result<Self, RecordError> {
        if body.record_type().signature_count() != 2 {
            return Err(RecordError::invalid("type", "is not a co-signed record type"));
        }
        let (content, header, message) = prepare(identity, created_at, &body)?;
        let author_sig = identity.sign_message(&message);
        Ok(PartiallySigned { content, author_sig, id: id_of(&message), header, body })
    }

    /// The bytes to send to the counterparty: content and the author's signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.content.clone();
        v.extend_from_slice(&self.author_sig);
        v
    }

    pub fn id(&self) -> RecordId {
        self.id
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn body(&self) -> &T {
        &self.body
    }

    /// The counterparty adds their signature. `identity` must be the counterparty the body names.
    pub fn countersign(self, identity: &Identity) -> Result<Signed<T>, RecordError> {
        let expected = self.cosigner()?;
        if identity.public() != &expected {
            return Err(RecordError::AuthorMismatch {
                expected: expected.to_string(),
                found: identity.public().to_string(),
            });
        }
        let sig = identity.sign_message(&signed_message(self.header.record_type, &self.content));
        Ok(Signed::assemble(self.content, &[self.author_sig, sig], self.id, self.header, self.body))
    }

    /// Adds a counter-signature received from the counterparty, verifying it.
    pub fn add_countersignature(self, sig: &[u8; 64]) -> Result<Signed<T>, RecordError> {
        let cosigner = self.cosigner()?;
        let message = signed_message(self.header.record_type, &self.content);
        cosigner
            .verifying_key()
            .verify_strict(&message, &Signature::from_bytes(sig))
            .map_err(|_| RecordError::BadSignature { index: 1 })?;
        Ok(Signed::assemble(self.content, &[self.author_sig, *sig], self.id, self.header, self.body))
    }

    fn cosigner(&self) -> Result<PublicKey, RecordError> {
        self.body.cosigner().copied().ok_or(RecordError::invalid("type", "is not a co-signed record type"))
    }
}

impl PartiallySigned<Body> {
    /// The typed partial record, or this one back if it is of another type.
    #[allow(clippy::result_large_err)] // the Err is the input handed back, not an error
    pub fn downcast<T: RecordBody>(self) -> Result<PartiallySigned<T>, PartiallySigned<Body>> {
        let PartiallySigned { content, author_sig, id, header, body } = self;
        match T::from_body(body) {
            Ok(body) => Ok(PartiallySigned { content, author_sig, id, header, body }),
            Err(body) => Err(PartiallySigned { content, author_sig, id, header, body }),
        }
    }

    /// Decodes a partially signed record received from its author and verifies the author's
    /// signature.
    pub fn from_bytes(bytes: &[u8], now: Timestamp) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge { len: bytes.len(), max: MAX_RECORD_BYTES });
        }
        // Decode as if complete by appending a placeholder signature, then verify only the first.
        let mut padded = bytes.to_vec();
        padded.extend_from_slice(&[0u8; SIGNATURE_LEN]);
        let u = decode(&padded)?;
        if u.header.record_type.signature_count() != 2 {
            return Err(RecordError::invalid("type", "is not a co-signed record type"));
        }
        u.check_time(now)?;
        let message = u.message();
        let sig = u.signature(0);
        u.header
            .author
            .verifying_key()
            .verify_strict(&message, &sig)
            .map_err(|_| RecordError::BadSignature { index: 0 })?;
        Ok(PartiallySigned {
            content: u.bytes[..u.content_len].to_vec(),
            author_sig: sig.to_bytes(),
            id: u.id,
            header: u.header,
            body: u.body,
        })
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for PartiallySigned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartiallySigned").field("id", &self.id).field("body", &self.body).finish()
    }
}
