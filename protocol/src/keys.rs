//! Identities: the one ed25519 key per person that is both the libp2p `PeerId` and the signer of
//! every record.
//!
//! A [`PublicKey`] is validated when it is made (a canonical encoding of a curve point that is not of
//! small order), so holding one means it can verify. An [`Identity`] holds the secret key; it never
//! prints it (its `Debug` shows the public key only), and the key is zeroed when dropped.
//!
//! The PeerId of an ed25519 key inlines the key (an identity multihash of its protobuf encoding), so
//! the author of a record is a PeerId and its verifying key is read back out of it, with no lookup.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libp2p_identity::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::error::RecordError;

/// The bytes that prefix an ed25519 public key inside a PeerId: identity multihash (0x00), length 36
/// (0x24), then the libp2p protobuf `PublicKey { Type = Ed25519 (0x08 0x01), Data = 32 bytes (0x12 0x20) }`.
pub const PEER_ID_ED25519_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A validated ed25519 public key: a record author, a deal party, a vouch subject.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// Validates 32 bytes as a public key. `field` names the field in errors.
    pub fn from_bytes_for(bytes: &[u8; 32], field: &'static str) -> Result<Self, RecordError> {
        // dalek accepts a few non-canonical encodings of a point; one key must have one encoding (the
        // author bytes are hashed into ids and PeerIds). `is_canonical` says whether re-encoding
        // the decoded point would give these bytes back, without the field inversion that costs.
        if let Some(key) = recent::get(bytes) {
            return Ok(PublicKey { key });
        }
        if !is_canonical(bytes) {
            return Err(RecordError::InvalidKey { field });
        }
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| RecordError::InvalidKey { field })?;
        if key.is_weak() {
            return Err(RecordError::WeakKey { field });
        }
        recent::insert(bytes, key);
        Ok(PublicKey { key })
    }

    /// Validates 32 bytes as a public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, RecordError> {
        Self::from_bytes_for(bytes, "public key")
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The libp2p PeerId of this key.
    pub fn to_peer_id(&self) -> PeerId {
        let mut bytes = [0u8; 38];
        bytes[..6].copy_from_slice(&PEER_ID_ED25519_PREFIX);
        bytes[6..].copy_from_slice(self.as_bytes());
        PeerId::from_bytes(&bytes).expect("an identity multihash of 36 bytes is always a valid PeerId")
    }

    /// Reads the key back out of an ed25519 PeerId. Other key types (RSA, secp256k1, hashed keys)
    /// cannot author troc records.
    pub fn from_peer_id(peer: &PeerId) -> Result<Self, KeyParseError> {
        let bytes = peer.to_bytes();
        if bytes.len() != 38 || bytes[..6] != PEER_ID_ED25519_PREFIX {
            return Err(KeyParseError::NotEd25519);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[6..]);
        PublicKey::from_bytes(&key).map_err(KeyParseError::Invalid)
    }

    /// A short form for display: the 8 characters that follow the constant `12D3KooW` of every
    /// ed25519 PeerId. Enough to tell neighbours apart on a screen; never use it as an identifier.
    pub fn short(&self) -> String {
        let s = self.to_peer_id().to_base58();
        s.get(8..16).unwrap_or(&s).to_owned()
    }
}

/// The keys this thread validated recently.
///
/// Why: validating a key means decompressing its curve point (a field exponentiation, ~5 µs), and
/// the same few hundred or thousand authors sign most of what a node receives. A node's ingest
/// decoded every author key again for every record; with this, a batch from a known neighbourhood
/// pays only for the signatures' own points (`docs/performance.md`, section Ingest).
///
/// Only keys that passed every check are kept, under their exact 32 bytes, so a hit gives what
/// validating again would. Per thread (no lock on the decode path); bounded by two generations of
/// [`recent::GENERATION`] keys: when the current one is full it becomes the previous one and the
/// old previous one is dropped, and a key found in the previous generation moves back to the current.
/// At most 2 × 4,096 keys of ~230 bytes (about 2 MiB) per decoding thread.
mod recent {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use ed25519_dalek::VerifyingKey;

    pub(super) const GENERATION: usize = 4096;

    #[derive(Default)]
    struct Generations {
        current: HashMap<[u8; 32], VerifyingKey>,
        previous: HashMap<[u8; 32], VerifyingKey>,
    }

    impl Generations {
        fn insert(&mut self, bytes: [u8; 32], key: VerifyingKey) {
            if self.current.len() >= GENERATION {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(bytes, key);
        }
    }

    thread_local! {
        static KEYS: RefCell<Generations> = RefCell::default();
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<VerifyingKey> {
        KEYS.with(|k| {
            let mut k = k.try_borrow_mut().ok()?;
            if let Some(key) = k.current.get(bytes) {
                return Some(*key);
            }
            let key = k.previous.remove(bytes)?;
            k.insert(*bytes, key);
            Some(key)
        })
    }

    pub(super) fn insert(bytes: &[u8; 32], key: VerifyingKey) {
        KEYS.with(|k| {
            if let Ok(mut k) = k.try_borrow_mut() {
                k.insert(*bytes, key);
            }
        });
    }

    #[cfg(test)]
    pub(super) fn len() -> usize {
        KEYS.with(|k| k.borrow().current.len() + k.borrow().previous.len())
    }
}

/// p = 2^255 - 19, little-endian.
const FIELD_P: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// Is this the one encoding of its point (as re-encoding the decoded point would give), for bytes
/// that decode at all? The encoding is y (255 bits, little-endian) and the sign of x in the top
/// bit. It is canonical when y < p, and when the sign bit is clear if x = 0, that is for y = 1 and
/// y = p - 1 (for any other y on the curve x is non-zero and the decoder takes the sign as given).
fn is_canonical(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    let sign = y[31] >> 7 == 1;
    y[31] &= 0x7f;
    if y.iter().rev().cmp(FIELD_P.iter().rev()) != std::cmp::Ordering::Less {
        return false;
    }
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_minus_one = FIELD_P;
    p_minus_one[0] -= 1;
    !(sign && (y == one || y == p_minus_one))
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_peer_id().to_base58())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_peer_id().to_base58())
    }
}

/// Why a string or PeerId is not a troc public key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyParseError {
    #[error("not a PeerId or 64 hex digits")]
    Syntax,
    #[error("the PeerId is not an inlined ed25519 key")]
    NotEd25519,
    #[error(transparent)]
    Invalid(RecordError),
}

impl FromStr for PublicKey {
    type Err = KeyParseError;

    /// Accepts a base58 PeerId (`12D3KooW…`) or the key as 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64 {
            let mut key = [0u8; 32];
            if hex::decode_to_slice(s, &mut key).is_ok() {
                return PublicKey::from_bytes(&key).map_err(KeyParseError::Invalid);
            }
        }
        let peer = PeerId::from_str(s).map_err(|_| KeyParseError::Syntax)?;
        PublicKey::from_peer_id(&peer)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PublicKey::from_str(&s).map_err(serde::de::Error::custom)
    }
}

/// The operating system could not supply randomness for a new key.
#[derive(Debug, Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct EntropyError(String);

/// Fills `buf` from the operating system's random number generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| EntropyError(e.to_string()))?;
    Ok(buf)
}

/// A person's secret key. Signs records; converts to the libp2p keypair of the same identity.
pub struct Identity {
    signing: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// A fresh identity from the operating system's randomness.
    pub fn generate() -> Result<Self, EntropyError> {
        let seed = Zeroizing::new(random_bytes::<32>()?);
        Ok(Identity::from_seed(&seed))
    }

    /// The identity of a 32-byte ed25519 seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey { key: signing.verifying_key() };
        Identity { signing, public }
    }

    /// The seed, for the keystore to save. Zeroed when dropped.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn peer_id(&self) -> PeerId {
        self.public.to_peer_id()
    }

    /// The same key as a libp2p keypair, for the swarm.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let mut seed = self.seed();
        libp2p_identity::Keypair::ed25519_from_bytes(&mut seed[..])
            .expect("any 32 bytes are a valid ed25519 secret key")
    }

    pub(crate) fn sign_message(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity::from_seed(&self.seed())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_matches_libp2p() {
        let id = Identity::from_seed(&[7u8; 32]);
        let kp = id.to_libp2p_keypair();
        assert_eq!(kp.public().to_peer_id(), id.peer_id());
        let back = PublicKey::from_peer_id(&id.peer_id()).unwrap();
        assert_eq!(&back, id.public());
        assert!(id.peer_id().to_base58().starts_with("12D3KooW"));
        assert_eq!(id.public().short().len(), 8);
    }

    #[test]
    fn parse_forms() {
        let id = Identity::from_seed(&[9u8; 32]);
        let p = id.public();
        assert_eq!(&p.to_string().parse::<PublicKey>().unwrap(), p);
        assert_eq!(&hex::encode(p.as_bytes()).parse::<PublicKey>().unwrap(), p);
        assert_eq!("nonsense".parse::<PublicKey>().unwrap_err(), KeyParseError::Syntax);
        // An RSA-style (sha256-hashed) PeerId is not an ed25519 key.
        let mut sha256_peer = vec![0x12, 0x20];
        sha256_peer.extend_from_slice(&[5u8; 32]);
        assert_eq!(
            PublicKey::from_peer_id(&PeerId::from_bytes(&sha256_peer).unwrap()).unwrap_err(),
            KeyParseError::NotEd25519
        );
    }

    #[test]
    fn secret_never_in_debug() {
        let id = Identity::from_seed(&[0x42u8; 32]);
        let dbg = format!("{id:?}");
        assert!(!dbg.contains(&hex::encode([0x42u8; 32])));
        assert!(!dbg.contains("42, 42"));
        assert!(dbg.contains("12D3KooW"));
    }

    #[test]
    fn recent_keys_are_bounded_and_give_what_validation_gives() {
        // Run on a thread of its own: the cache is per thread.
        std::thread::spawn(|| {
            let keys: Vec<[u8; 32]> = (0..(2 * recent::GENERATION + 100) as u32)
                .map(|i| *Identity::from_seed(&seed(i)).public().as_bytes())
                .collect();
            for k in &keys {
                assert_eq!(PublicKey::from_bytes(k).unwrap().as_bytes(), k);
            }
            assert!(recent::len() <= 2 * recent::GENERATION, "{}", recent::len());
            // Hits (the newest keys) and misses (the oldest were dropped) give the same keys.
            for k in keys.iter().rev().take(10).chain(keys.iter().take(10)) {
                assert_eq!(PublicKey::from_bytes(k).unwrap().as_bytes(), k);
            }
            // Bad keys are never kept: asking again gives the same error.
            let mut off_curve = [0u8; 32];
            off_curve[0] = 2;
            for _ in 0..2 {
                assert_eq!(PublicKey::from_bytes(&off_curve).unwrap_err().code(), "invalid_key");
            }
        })
        .join()
        .unwrap();

        fn seed(i: u32) -> [u8; 32] {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            s
        }
    }

    #[test]
    fn weak_and_invalid_keys() {
        // The identity point (0, 1) is of small order.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity_point).unwrap_err().code(), "weak_key");
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKey::from_bytes(&off_curve).unwrap_err().code(), "invalid_key");
        // A non-canonical encoding: y = p + 1 (encodes the same point as y = 1).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert_eq!(PublicKey::from_bytes(&non_canonical).unwrap_err().code(), "invalid_key");
    }

    /// The byte-level canonical check agrees with dalek's re-encoding on every kind of input: random
    /// keys, the points of small order, small and large y, with and without the sign bit.
    #[test]
    fn canonical_check_matches_reencoding() {
        let mut inputs: Vec<[u8; 32]> = Vec::new();
        for i in 0..64u8 {
            inputs.push(*Identity::from_seed(&[i; 32]).public().as_bytes());
        }
        for p in curve25519_dalek::constants::EIGHT_TORSION.iter() {
            inputs.push(p.compress().to_bytes());
        }
        for y in 0..38u8 {
            let mut low = [0u8; 32];
            low[0] = y;
            inputs.push(low);
            // p - 20 + y: the top of the field and just over it.
            let mut high = FIELD_P;
            high[0] = 0xed - 20 + y;
            inputs.push(high);
        }
        for b in inputs.clone() {
            let mut signed = b;
            signed[31] ^= 0x80;
            inputs.push(signed);
        }
        let mut decodable = 0;
        for b in &inputs {
            if let Ok(key) = VerifyingKey::from_bytes(b) {
                decodable += 1;
                let reencodes = key.to_edwards().compress().as_bytes() == b;
                assert_eq!(is_canonical(b), reencodes, "{}", hex::encode(b));
            }
        }
        assert!(decodable > 150, "{decodable}");
    }
}
