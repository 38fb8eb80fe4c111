//! The record types: the header every record starts with, and one body per type, each with its
//! fixed field order (encode / decode) and its stateless rules (`check`).
//!
//! The field order here IS the wire format: `docs/protocol.md` lists the same fields in the same
//! order, and the golden vectors in `docs/test-vectors.json` pin the bytes. Change neither without
//! a new format version.

use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Writer};
use crate::error::RecordError;
use crate::keys::PublicKey;
use crate::limits::*;
use crate::types::*;

/// The format version this implementation writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// The type of a record: its one-byte code, its domain-separation prefix, its signature count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    Profile,
    Listing,
    Withdrawal,
    Proposal,
    Agreement,
    Handover,
    Return,
    Acknowledgement,
    Completion,
    Cancellation,
    Extension,
    Review,
    ReviewCommitment,
    Vouch,
    Revocation,
}

impl RecordType {
    pub const ALL: &'static [RecordType] = &[
        RecordType::Profile,
        RecordType::Listing,
        RecordType::Withdrawal,
        RecordType::Proposal,
        RecordType::Agreement,
        RecordType::Handover,
        RecordType::Return,
        RecordType::Acknowledgement,
        RecordType::Completion,
        RecordType::Cancellation,
        RecordType::Extension,
        RecordType::Review,
        RecordType::ReviewCommitment,
        RecordType::Vouch,
        RecordType::Revocation,
    ];

    /// The byte that encodes the type (1-based position in [`RecordType::ALL`]).
    pub fn code(self) -> u8 {
        match self {
            RecordType::Profile => 1,
            RecordType::Listing => 2,
            RecordType::Withdrawal => 3,
            RecordType::Proposal => 4,
            RecordType::Agreement => 5,
            RecordType::Handover => 6,
            RecordType::Return => 7,
            RecordType::Acknowledgement => 8,
            RecordType::Completion => 9,
            RecordType::Cancellation => 10,
            RecordType::Extension => 11,
            RecordType::Review => 12,
            RecordType::ReviewCommitment => 13,
            RecordType::Vouch => 14,
            RecordType::Revocation => 15,
        }
    }

    pub fn from_code(code: u8) -> Result<Self, RecordError> {
        RecordType::ALL.get((code as usize).wrapping_sub(1)).copied().ok_or(RecordError::UnknownType(code))
    }

    /// The snake_case name, used in the domain prefix and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RecordType::Profile => "profile",
            RecordType::Listing => "listing",
            RecordType::Withdrawal => "withdrawal",
            RecordType::Proposal => "proposal",
            RecordType::Agreement => "agreement",
            RecordType::Handover => "handover",
            RecordType::Return => "return",
            RecordType::Acknowledgement => "acknowledgement",
            RecordType::Completion => "completion",
            RecordType::Cancellation => "cancellation",
            RecordType::Extension => "extension",
            RecordType::Review => "review",
            RecordType::ReviewCommitment => "review_commitment",
            RecordType::Vouch => "vouch",
            RecordType::Revocation => "revocation",
        }
    }

    /// The domain-separation prefix the signatures and the id cover before the content:
    /// `troc/v1/<name>` followed by one zero byte. It keeps a signature on one record type from being
    /// valid as any other type, or as any other use of the same key (libp2p's own signatures among them).
    pub fn domain_prefix(self) -> &'static [u8] {
        match self {
            RecordType::Profile => b"troc/v1/profile\0",
            RecordType::Listing => b"troc/v1/listing\0",
            RecordType::Withdrawal => b"troc/v1/withdrawal\0",
            RecordType::Proposal => b"troc/v1/proposal\0",
            RecordType::Agreement => b"troc/v1/agreement\0",
            RecordType::Handover => b"troc/v1/handover\0",
            RecordType::Return => b"troc/v1/return\0",
            RecordType::Acknowledgement => b"troc/v1/acknowledgement\0",
            RecordType::Completion => b"troc/v1/completion\0",
            RecordType::Cancellation => b"troc/v1/cancellation\0",
            RecordType::Extension => b"troc/v1/extension\0",
            RecordType::Review => b"troc/v1/review\0",
            RecordType::ReviewCommitment => b"troc/v1/review_commitment\0",
            RecordType::Vouch => b"troc/v1/vouch\0",
            RecordType::Revocation => b"troc/v1/revocation\0",
        }
    }

    /// How many signatures a record of this type carries: 2 for the co-signed agreement and
    /// extension (author first, then counterparty), 1 for everything else.
    pub fn signature_count(self) -> usize {
        match self {
            RecordType::Agreement | RecordType::Extension => 2,
            _ => 1,
        }
    }

    /// Whether the record is public (gossiped to the community) or private (sent only to the other
    /// party of a deal): proposals carry private messages and never leave the two nodes.
    pub fn is_public(self) -> bool {
        self != RecordType::Proposal
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The part every record starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub record_type: RecordType,
    pub author: PublicKey,
    pub created_at: Timestamp,
}

/// Size of the encoded header: version, type, author key, created_at.
pub const HEADER_LEN: usize = 1 + 1 + 32 + 8;

impl Header {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.version);
        w.u8(self.record_type.code());
        w.raw(self.author.as_bytes());
        w.u64(self.created_at);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        let version = r.u8("version")?;
        if version != FORMAT_VERSION {
            return Err(RecordError::UnknownVersion(version));
        }
        let record_type = RecordType::from_code(r.u8("type")?)?;
        let author = key(r, "author")?;
        let created_at = r.u64("created_at")?;
        Ok(Header { version, record_type, author, created_at })
    }
}

fn key(r: &mut Reader<'_>, field: &'static str) -> Result<PublicKey, RecordError> {
    PublicKey::from_bytes_for(&r.array(field)?, field)
}

/// A geohash field: over-long is [`RecordError::LocationTooPrecise`], as `check_geohash` says when
/// signing, not the generic `FieldTooLong` of the text reader.
fn geohash(r: &mut Reader<'_>, field: &'static str) -> Result<String, RecordError> {
    r.text(field, MAX_GEOHASH_LEN).map_err(|e| match e {
        RecordError::FieldTooLong { len, max, .. } => RecordError::LocationTooPrecise { len, max },
        e => e,
    })
}

fn id(r: &mut Reader<'_>, field: &'static str) -> Result<RecordId, RecordError> {
    Ok(RecordId(r.array(field)?))
}

fn other_than_author(field: &'static str, who: &PublicKey, author: &PublicKey) -> Result<(), RecordError> {
    if who == author { Err(RecordError::SelfReference { field }) } else { Ok(()) }
}

fn note(field: &'static str, s: &str, max: usize) -> Result<(), RecordError> {
    check_text(field, s, 0, max, Lines::Many)
}

pub(crate) mod sealed {
    use super::*;

    /// The wire codec and the stateless rules of a body. Sealed: only this crate defines bodies.
    pub trait Codec: Sized {
        fn encode(&self, w: &mut Writer);
        fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError>;
        /// Rules that need only the record itself (not the clock, not other records).
        fn check(&self, header: &Header) -> Result<(), RecordError>;
        /// The second signer of a co-signed type.
        fn cosigner_key(&self) -> Option<&PublicKey> {
            None
        }
        /// When the record stops being valid (listings, vouches).
        fn expiry(&self) -> Option<Timestamp> {
            None
        }
    }
}

/// A record body type. Implemented by the fifteen body structs and by [`Body`], the sum of them.
pub trait RecordBody: sealed::Codec + Clone + std::fmt::Debug + Serialize {
    /// The record type of this body.
    fn record_type(&self) -> RecordType;
    fn into_body(self) -> Body;
    /// The body of this type, or the input handed back (not an error: a `match` that missed).
    #[allow(clippy::result_large_err)]
    fn from_body(body: Body) -> Result<Self, Body>;

    /// The second signer of a co-signed record (agreement, extension): its counterparty.
    fn cosigner(&self) -> Option<&PublicKey> {
        sealed::Codec::cosigner_key(self)
    }

    /// When the record stops being valid: a listing's `valid_until`, a vouch's `expires_at`.
    fn expires_at(&self) -> Option<Timestamp> {
        sealed::Codec::expiry(self)
    }
}

macro_rules! bodies {
    ($($variant:ident),+ $(,)?) => {
        /// Any record body.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
        pub enum Body {
            $($variant($variant),)+
        }

        impl Body {
            pub fn record_type(&self) -> RecordType {
                match self { $(Body::$variant(_) => RecordType::$variant,)+ }
            }
        }

        impl sealed::Codec for Body {
            fn encode(&self, w: &mut Writer) {
                match self { $(Body::$variant(b) => b.encode(w),)+ }
            }
            fn decode(_: &mut Reader<'_>) -> Result<Self, RecordError> {
                Err(RecordError::malformed(0, "a body is decoded by its type"))
            }
            fn check(&self, header: &Header) -> Result<(), RecordError> {
                match self { $(Body::$variant(b) => b.check(header),)+ }
            }
            fn cosigner_key(&self) -> Option<&PublicKey> {
                match self { $(Body::$variant(b) => b.cosigner_key(),)+ }
            }
            fn expiry(&self) -> Option<Timestamp> {
                match self { $(Body::$variant(b) => b.expiry(),)+ }
            }
        }

        impl RecordBody for Body {
            fn record_type(&self) -> RecordType { Body::record_type(self) }
            fn into_body(self) -> Body { self }
            fn from_body(body: Body) -> Result<Self, Body> { Ok(body) }
        }

        $(
            impl RecordBody for $variant {
                fn record_type(&self) -> RecordType { RecordType::$variant }
                fn into_body(self) -> Body { Body::$variant(self) }
                fn from_body(body: Body) -> Result<Self, Body> {
                    match body { Body::$variant(b) => Ok(b), other => Err(other) }
                }
            }
        )+

        /// Decodes the body of a record of type `t`.
        pub(crate) fn decode_body(t: RecordType, r: &mut Reader<'_>) -> Result<Body, RecordError> {
            use sealed::Codec;
            Ok(match t { $(RecordType::$variant => Body::$variant($variant::decode(r)?),)+ })
        }
    };
}

bodies!(
    Profile,
    Listing,
    Withdrawal,
    Proposal,
    Agreement,
    Handover,
    Return,
    Acknowledgement,
    Completion,
    Cancellation,
    Extension,
    Review,
    ReviewCommitment,
    Vouch,
    Revocation,
);

// ---------------------------------------------------------------------------------------------
// Profile

/// Who a person is, as they choose to say it. Replaceable: the newest per author wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// The community slug the person belongs to, or empty.
    #[serde(default)]
    pub community: String,
    /// A coarse area: a geohash of at most 6 characters, or empty.
    #[serde(default)]
    pub area: String,
    #[serde(default)]
    pub about: String,
    /// How to be contacted (shared publicly; an exact address belongs in a private deal message).
    #[serde(default)]
    pub contact: String,
}

impl sealed::Codec for Profile {
    fn encode(&self, w: &mut Writer) {
        w.text(&self.name);
        w.text(&self.community);
        w.text(&self.area);
        w.text(&self.about);
        w.text(&self.contact);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Profile {
            name: r.text("name", MAX_NAME)?,
            community: r.text("community", MAX_COMMUNITY)?,
            area: geohash(r, "area")?,
            about: r.text("about", MAX_ABOUT)?,
            contact: r.text("contact", MAX_CONTACT)?,
        })
    }
    fn check(&self, _: &Header) -> Result<(), RecordError> {
        check_text("name", &self.name, 1, MAX_NAME, Lines::One)?;
        if !self.community.is_empty() {
            check_slug("community", &self.community, MAX_COMMUNITY)?;
        }
        check_geohash("area", &self.area)?;
        check_text("about", &self.about, 0, MAX_ABOUT, Lines::Many)?;
        check_text("contact", &self.contact, 0, MAX_CONTACT, Lines::One)
    }
}

// ---------------------------------------------------------------------------------------------
// Listing

/// Kind-specific terms of a listing. Which fields a kind may use is in [`Listing`]'s rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// Lend and want: the longest loan, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loan_days: Option<u16>,
    /// Lend and share: a deposit asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit: Option<Money>,
    /// Any kind: conditions of use.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub conditions: String,
    /// Any kind: when the thing or person is available ("weekends").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub availability: String,
    /// Swap and barter (required), want (optional): what is wanted, or offered, in return.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub in_return: String,
    /// Services only: rough hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u16>,
}

/// An offer (lend, share, swap, barter, give) or a want. Addressable: the author and `key` name it
/// across edits, and a higher `revision` replaces a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    pub key: ListingKey,
    pub revision: u32,
    pub kind: Kind,
    pub category: Category,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub terms: Terms,
    pub community: String,
    /// Coarse location: a geohash of at most 6 characters, or empty.
    #[serde(default)]
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_until: Option<Timestamp>,
    pub valid_until: Timestamp,
}

impl sealed::Codec for Listing {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.key.as_bytes());
        w.u32(self.revision);
        w.u8(self.kind.code());
        w.u8(self.category.code());
        w.text(&self.title);
        w.text(&self.description);
        w.list(&self.tags, |w, t| w.text(t));
        let t = &self.terms;
        w.option(&t.max_loan_days, |w, v| w.u16(*v));
        w.option(&t.deposit, |w, m| {
            w.u32(m.amount_minor);
            w.raw(&m.currency.0);
        });
        w.text(&t.conditions);
        w.text(&t.availability);
        w.text(&t.in_return);
        w.option(&t.hours, |w, v| w.u16(*v));
        w.text(&self.community);
        w.text(&self.location);
        w.option(&self.available_from, |w, v| w.u64(*v));
        w.option(&self.available_until, |w, v| w.u64(*v));
        w.u64(self.valid_until);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Listing {
            key: ListingKey(r.array("key")?),
            revision: r.u32("revision")?,
            kind: Kind::from_code(r.u8("kind")?)?,
            category: Category::from_code(r.u8("category")?)?,
            title: r.text("title", MAX_TITLE)?,
            description: r.text("description", MAX_DESCRIPTION)?,
            tags: r.list("tags", MAX_TAGS, |r| r.text("tag", MAX_TAG))?,
            terms: Terms {
                max_loan_days: r.option("max_loan_days", |r| r.u16("max_loan_days"))?,
                deposit: r.option("deposit", |r| {
                    Ok(Money { amount_minor: r.u32("deposit")?, currency: Currency(r.array("currency")?) })
                })?,
                conditions: r.text("conditions", MAX_CONDITIONS)?,
                availability: r.text("availability", MAX_AVAILABILITY)?,
                in_return: r.text("in_return", MAX_IN_RETURN)?,
                hours: r.option("hours", |r| r.u16("hours"))?,
            },
            community: r.text("community", MAX_COMMUNITY)?,
            location: geohash(r, "location")?,
            available_from: r.option("available_from", |r| r.u64("available_from"))?,
            available_until: r.option("available_until", |r| r.u64("available_until"))?,
            valid_until: r.u64("valid_until")?,
        })
    }

    fn check(&self, header: &Header) -> Result<(), RecordError> {
        if self.revision == 0 {
            return Err(RecordError::invalid("revision", "starts at 1"));
        }
        check_text("title", &self.title, 1, MAX_TITLE, Lines::One)?;
        check_text("description", &self.description, 0, MAX_DESCRIPTION, Lines::Many)?;
        if self.tags.len() > MAX_TAGS {
            return Err(RecordError::TooManyItems { field: "tags", len: self.tags.len(), max: MAX_TAGS });
        }
        for (i, tag) in self.tags.iter().enumerate() {
            check_slug("tag", tag, MAX_TAG)?;
            if self.tags[..i].contains(tag) {
                return Err(RecordError::invalid("tags", "a tag appears twice"));
            }
        }
        self.check_terms()?;
        check_slug("community", &self.community, MAX_COMMUNITY)?;
        check_geohash("location", &self.location)?;
        if let (Some(from), Some(until)) = (self.available_from, self.available_until)
            && from > until
        {
            return Err(RecordError::invalid("available_until", "is before available_from"));
        }
        if self.valid_until <= header.created_at {
            return Err(RecordError::invalid("valid_until", "must be after created_at"));
        }
        if self.valid_until - header.created_at > MAX_LISTING_LIFETIME_SECS {
            return Err(RecordError::invalid("valid_until", "more than 180 days after created_at"));
        }
        Ok(())
    }
    fn expiry(&self) -> Option<Timestamp> {
        Some(self.valid_until)
    }
}

impl Listing {
    fn check_terms(&self) -> Result<(), RecordError> {
        let t = &self.terms;
        let k = self.kind;
        if let Some(days) = t.max_loan_days {
            if !matches!(k, Kind::Lend | Kind::Want) {
                return Err(RecordError::invalid("max_loan_days", "only for lend and want"));
            }
            if days == 0 || days > MAX_LOAN_DAYS {
                return Err(RecordError::invalid("max_loan_days", "must be 1 to 365"));
            }
        }
        if let Some(deposit) = &t.deposit {
            if !matches!(k, Kind::Lend | Kind::Share) {
                return Err(RecordError::invalid("deposit", "only for lend and share"));
            }
            deposit.currency.check()?;
        }
        check_text("conditions", &t.conditions, 0, MAX_CONDITIONS, Lines::Many)?;
        check_text("availability", &t.availability, 0, MAX_AVAILABILITY, Lines::One)?;
        match k {
            Kind::Swap | Kind::Barter => check_text("in_return", &t.in_return, 1, MAX_IN_RETURN, Lines::Many)?,
            Kind::Want => check_text("in_return", &t.in_return, 0, MAX_IN_RETURN, Lines::Many)?,
            _ if !t.in_return.is_empty() => {
                return Err(RecordError::invalid("in_return", "only for swap, barter and want"));
            }
            _ => {}
        }
        if let Some(hours) = t.hours {
            if !self.category.is_service() {
                return Err(RecordError::invalid("hours", "only for service categories"));
            }
            if hours == 0 || hours > MAX_HOURS {
                return Err(RecordError::invalid("hours", "must be 1 to 1000"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Withdrawal

/// The author's signed tombstone for one of their listings, every revision of it, for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// The listing's author: must be the withdrawal's author.
    pub listing_author: PublicKey,
    pub listing_key: ListingKey,
    #[serde(default)]
    pub reason: String,
}

impl sealed::Codec for Withdrawal {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.listing_author.as_bytes());
        w.raw(self.listing_key.as_bytes());
        w.text(&self.reason);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Withdrawal {
            listing_author: key(r, "listing_author")?,
            listing_key: ListingKey(r.array("listing_key")?),
            reason: r.text("reason", MAX_NOTE)?,
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        if self.listing_author != header.author {
            return Err(RecordError::NotOwnRecord { record_type: "withdrawal" });
        }
        note("reason", &self.reason, MAX_NOTE)
    }
}

// ---------------------------------------------------------------------------------------------
// Deal records

/// A private proposal (or counter-proposal) for a deal about a listing. Sent only to the other
/// party; never gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The other party.
    pub counterparty: PublicKey,
    /// The listing's author: the author or the counterparty.
    pub listing_author: PublicKey,
    pub listing_key: ListingKey,
    /// The revision the proposal was made against.
    pub listing_revision: u32,
    pub kind: Kind,
    pub start: Timestamp,
    /// When the thing comes back (lend, share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    #[serde(default)]
    pub message: String,
    /// What is offered in return (swap, barter).
    #[serde(default)]
    pub in_return: String,
    /// The earlier proposal of the same negotiation that this one counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<RecordId>,
}

fn check_parties(author: &PublicKey, counterparty: &PublicKey, listing_author: &PublicKey) -> Result<(), RecordError> {
    other_than_author("counterparty", counterparty, author)?;
    if listing_author != author && listing_author != counterparty {
        return Err(RecordError::invalid("listing_author", "must be one of the two parties"));
    }
    Ok(())
}

impl sealed::Codec for Proposal {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.counterparty.as_bytes());
        w.raw(self.listing_author.as_bytes());
        w.raw(self.listing_key.as_bytes());
        w.u32(self.listing_revision);
        w.u8(self.kind.code());
        w.u64(self.start);
        w.option(&self.end, |w, v| w.u64(*v));
        w.text(&self.message);
        w.text(&self.in_return);
        w.option(&self.supersedes, |w, v| w.raw(v.as_bytes()));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Proposal {
            counterparty: key(r, "counterparty")?,
            listing_author: key(r, "listing_author")?,
            listing_key: ListingKey(r.array("listing_key")?),
            listing_revision: r.u32("listing_revision")?,
            kind: Kind::from_code(r.u8("kind")?)?,
            start: r.u64("start")?,
            end: r.option("end", |r| r.u64("end"))?,
            message: r.text("message", MAX_MESSAGE)?,
            in_return: r.text("in_return", MAX_IN_RETURN)?,
            supersedes: r.option("supersedes", |r| id(r, "supersedes"))?,
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        check_parties(&header.author, &self.counterparty, &self.listing_author)?;
        if self.listing_revision == 0 {
            return Err(RecordError::invalid("listing_revision", "starts at 1"));
        }
        if let Some(end) = self.end
            && end <= self.start
        {
            return Err(RecordError::invalid("end", "must be after start"));
        }
        note("message", &self.message, MAX_MESSAGE)?;
        note("in_return", &self.in_return, MAX_IN_RETURN)
    }
}

/// The public, minimal form of a deal both parties agreed to: parties, listing, kind and dates,
/// never the private messages. Co-signed: the author signs first, then the counterparty, both over
/// the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    pub counterparty: PublicKey,
    /// The id of the proposal accepted.
    pub proposal: RecordId,
    pub listing_author: PublicKey,
    pub listing_key: ListingKey,
    pub kind: Kind,
    pub start: Timestamp,
    /// When the thing is due back: required for lend, optional for share, absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
}

impl sealed::Codec for Agreement {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.counterparty.as_bytes());
        w.raw(self.proposal.as_bytes());
        w.raw(self.listing_author.as_bytes());
        w.raw(self.listing_key.as_bytes());
        w.u8(self.kind.code());
        w.u64(self.start);
        w.option(&self.due, |w, v| w.u64(*v));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Agreement {
            counterparty: key(r, "counterparty")?,
            proposal: id(r, "proposal")?,
            listing_author: key(r, "listing_author")?,
            listing_key: ListingKey(r.array("listing_key")?),
            kind: Kind::from_code(r.u8("kind")?)?,
            start: r.u64("start")?,
            due: r.option("due", |r| r.u64("due"))?,
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        check_parties(&header.author, &self.counterparty, &self.listing_author)?;
        match (self.kind, self.due) {
            (Kind::Lend, None) => Err(RecordError::invalid("due", "a loan needs a due date")),
            (Kind::Lend | Kind::Share, Some(due)) if due <= self.start => {
                Err(RecordError::invalid("due", "must be after start"))
            }
            (Kind::Swap | Kind::Barter | Kind::Give | Kind::Want, Some(_)) => {
                Err(RecordError::invalid("due", "only lend and share have a due date"))
            }
            _ => Ok(()),
        }
    }
    fn cosigner_key(&self) -> Option<&PublicKey> {
        Some(&self.counterparty)
    }
}

macro_rules! deal_step {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub agreement: RecordId,
            #[serde(default)]
            pub note: String,
        }

        impl sealed::Codec for $name {
            fn encode(&self, w: &mut Writer) {
                w.raw(self.agreement.as_bytes());
                w.text(&self.note);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
                Ok($name { agreement: id(r, "agreement")?, note: r.text("note", MAX_NOTE)? })
            }
            fn check(&self, _: &Header) -> Result<(), RecordError> {
                note("note", &self.note, MAX_NOTE)
            }
        }
    };
}

deal_step!(
    /// The thing (or service) was handed over. Signed by the party handing over.
    Handover
);
deal_step!(
    /// The thing was returned (lend, share). Signed by the party returning it.
    Return
);
deal_step!(
    /// The deal is done. Signed by either party.
    Completion
);

/// The other party confirms a handover or return happened, and in what condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    pub agreement: RecordId,
    /// The handover or return acknowledged.
    pub subject: RecordId,
    pub condition: Condition,
    #[serde(default)]
    pub note: String,
}

impl sealed::Codec for Acknowledgement {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.agreement.as_bytes());
        w.raw(self.subject.as_bytes());
        w.u8(self.condition.code());
        w.text(&self.note);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Acknowledgement {
            agreement: id(r, "agreement")?,
            subject: id(r, "subject")?,
            condition: Condition::from_code(r.u8("condition")?)?,
            note: r.text("note", MAX_NOTE)?,
        })
    }
    fn check(&self, _: &Header) -> Result<(), RecordError> {
        note("note", &self.note, MAX_NOTE)
    }
}

/// A proposal declined or withdrawn, or a deal cancelled, not shown up to, or disputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// The proposal (declined, withdrawn) or agreement (cancelled, no_show, dispute).
    pub deal: RecordId,
    pub reason: CancelReason,
    #[serde(default)]
    pub note: String,
}

impl sealed::Codec for Cancellation {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.deal.as_bytes());
        w.u8(self.reason.code());
        w.text(&self.note);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Cancellation {
            deal: id(r, "deal")?,
            reason: CancelReason::from_code(r.u8("reason")?)?,
            note: r.text("note", MAX_NOTE)?,
        })
    }
    fn check(&self, _: &Header) -> Result<(), RecordError> {
        note("note", &self.note, MAX_NOTE)
    }
}

/// A loan's due date moved, agreed by both parties: co-signed like an agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    pub agreement: RecordId,
    pub counterparty: PublicKey,
    pub new_due: Timestamp,
}

impl sealed::Codec for Extension {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.agreement.as_bytes());
        w.raw(self.counterparty.as_bytes());
        w.u64(self.new_due);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Extension {
            agreement: id(r, "agreement")?,
            counterparty: key(r, "counterparty")?,
            new_due: r.u64("new_due")?,
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        other_than_author("counterparty", &self.counterparty, &header.author)
    }
    fn cosigner_key(&self) -> Option<&PublicKey> {
        Some(&self.counterparty)
    }
}

// ---------------------------------------------------------------------------------------------
// Reviews, vouches, revocations

/// One rated aspect of a deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacetRating {
    pub facet: Facet,
    pub rating: Rating,
}

/// A party's review of the other party of an agreement. Published openly, or first hidden behind a
/// [`ReviewCommitment`] to its id and revealed later (the nonce makes the id unguessable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub agreement: RecordId,
    /// The party reviewed: the agreement's other party.
    pub subject: PublicKey,
    pub rating: Rating,
    #[serde(default)]
    pub facets: Vec<FacetRating>,
    #[serde(default)]
    pub text: String,
    pub nonce: Nonce,
}

impl sealed::Codec for Review {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.agreement.as_bytes());
        w.raw(self.subject.as_bytes());
        w.u8(self.rating.code());
        w.list(&self.facets, |w, f| {
            w.u8(f.facet.code());
            w.u8(f.rating.code());
        });
        w.text(&self.text);
        w.raw(self.nonce.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Review {
            agreement: id(r, "agreement")?,
            subject: key(r, "subject")?,
            rating: Rating::from_code(r.u8("rating")?)?,
            facets: r.list("facets", MAX_FACETS, |r| {
                Ok(FacetRating {
                    facet: Facet::from_code(r.u8("facet")?)?,
                    rating: Rating::from_code(r.u8("rating")?)?,
                })
            })?,
            text: r.text("text", MAX_REVIEW_TEXT)?,
            nonce: Nonce(r.array("nonce")?),
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        other_than_author("subject", &self.subject, &header.author)?;
        if self.facets.len() > MAX_FACETS {
            return Err(RecordError::TooManyItems { field: "facets", len: self.facets.len(), max: MAX_FACETS });
        }
        for (i, f) in self.facets.iter().enumerate() {
            if self.facets[..i].iter().any(|g| g.facet == f.facet) {
                return Err(RecordError::invalid("facets", "a facet appears twice"));
            }
        }
        note("text", &self.text, MAX_REVIEW_TEXT)
    }
}

/// A blind review: a commitment to the id of a [`Review`] that is revealed later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewCommitment {
    pub agreement: RecordId,
    pub subject: PublicKey,
    /// The id of the hidden review.
    pub review: RecordId,
}

impl ReviewCommitment {
    /// Whether `review` is the reveal of this commitment: same author, agreement and subject, and
    /// its id is the committed one.
    pub fn is_revealed_by(
        &self,
        commitment_author: &PublicKey,
        review_author: &PublicKey,
        review_id: &RecordId,
        review: &Review,
    ) -> Result<(), RecordError> {
        if commitment_author != review_author {
            return Err(RecordError::AuthorMismatch {
                expected: commitment_author.to_string(),
                found: review_author.to_string(),
            });
        }
        if &self.review != review_id || self.agreement != review.agreement || self.subject != review.subject {
            return Err(RecordError::invalid("review", "does not match its commitment"));
        }
        Ok(())
    }
}

impl sealed::Codec for ReviewCommitment {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.agreement.as_bytes());
        w.raw(self.subject.as_bytes());
        w.raw(self.review.as_bytes());
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(ReviewCommitment { agreement: id(r, "agreement")?, subject: key(r, "subject")?, review: id(r, "review")? })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        other_than_author("subject", &self.subject, &header.author)
    }
}

/// "I know this person": a weak trust edge with a context and an expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vouch {
    pub subject: PublicKey,
    pub context: String,
    pub expires_at: Timestamp,
}

impl sealed::Codec for Vouch {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.subject.as_bytes());
        w.text(&self.context);
        w.u64(self.expires_at);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Vouch {
            subject: key(r, "subject")?,
            context: r.text("context", MAX_VOUCH_CONTEXT)?,
            expires_at: r.u64("expires_at")?,
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        other_than_author("subject", &self.subject, &header.author)?;
        check_text("context", &self.context, 1, MAX_VOUCH_CONTEXT, Lines::One)?;
        if self.expires_at <= header.created_at {
            return Err(RecordError::invalid("expires_at", "must be after created_at"));
        }
        if self.expires_at - header.created_at > MAX_VOUCH_LIFETIME_SECS {
            return Err(RecordError::invalid("expires_at", "more than two years after created_at"));
        }
        Ok(())
    }
    fn expiry(&self) -> Option<Timestamp> {
        Some(self.expires_at)
    }
}

/// The author withdraws one of their own records (a review, a vouch, a profile ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The revoked record's author: must be the revocation's author.
    pub target_author: PublicKey,
    pub target: RecordId,
    #[serde(default)]
    pub reason: String,
}

impl sealed::Codec for Revocation {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.target_author.as_bytes());
        w.raw(self.target.as_bytes());
        w.text(&self.reason);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        Ok(Revocation {
            target_author: key(r, "target_author")?,
            target: id(r, "target")?,
            reason: r.text("reason", MAX_NOTE)?,
        })
    }
    fn check(&self, header: &Header) -> Result<(), RecordError> {
        if self.target_author != header.author {
            return Err(RecordError::NotOwnRecord { record_type: "revocation" });
        }
        note("reason", &self.reason, MAX_NOTE)
    }
}
