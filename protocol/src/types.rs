//! The small value types records are made of: ids, listing keys, the enumerations (kind, category,
//! rating ...) with their one-byte codes and JSON names, money, and the rules for text fields.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::RecordError;

/// Unix time in seconds.
pub type Timestamp = u64;

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out)?;
                Ok($name(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A record id: SHA-256 of the bytes the author's signature covers (domain prefix and content).
    RecordId,
    32
);
hex_bytes!(
    /// The author's name for one listing, stable across its revisions. Random, chosen at creation.
    ListingKey,
    16
);
hex_bytes!(
    /// Random bytes that make a review's id unguessable while it is hidden behind a commitment.
    Nonce,
    16
);

impl RecordId {
    /// A short form for display (the first 12 hex digits).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// Declares a one-byte enumeration with its code table, serde names and parsing.
macro_rules! code_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $code:literal => $slug:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $slug)] $variant,)+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The byte that encodes this value.
            pub fn code(self) -> u8 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The value a byte encodes, or an `invalid_value` error.
            pub fn from_code(code: u8) -> Result<Self, RecordError> {
                match code {
                    $($code => Ok($name::$variant),)+
                    _ => Err(RecordError::invalid($field, "unknown code")),
                }
            }

            /// The name used in JSON and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $slug,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($slug => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $field, expected: &[$($slug,)+] }),
                }
            }
        }
    };
}

/// A name that is not one of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}; expected one of: {}", expected.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub expected: &'static [&'static str],
}

code_enum!(
    /// What a listing is. The first five are offers; `Want` is a request.
    Kind, "kind" {
        /// Lend a thing, which comes back.
        Lend = 1 => "lend",
        /// Share a thing used in place or by turns (a garden, a car, a workshop).
        Share = 2 => "share",
        /// Exchange a thing for a thing, for good.
        Swap = 3 => "swap",
        /// Exchange a thing or service for a service or thing.
        Barter = 4 => "barter",
        /// Give away.
        Give = 5 => "give",
        /// Ask for something.
        Want = 6 => "want",
    }
);

impl Kind {
    pub fn is_offer(self) -> bool {
        self != Kind::Want
    }

    /// Whether a deal of this kind has a return: lend and share.
    pub fn has_return(self) -> bool {
        matches!(self, Kind::Lend | Kind::Share)
    }
}

code_enum!(
    /// The starter taxonomy (documented in `docs/protocol.md`). Codes 1-31 are things, 32-63 services.
    Category, "category" {
        Tools = 1 => "tools",
        Garden = 2 => "garden",
        Kitchen = 3 => "kitchen",
        Kids = 4 => "kids",
        Sports = 5 => "sports",
        Transport = 6 => "transport",
        Electronics = 7 => "electronics",
        Books = 8 => "books",
        Household = 9 => "household",
        Clothing = 10 => "clothing",
        Music = 11 => "music",
        Camping = 12 => "camping",
        Other = 31 => "other",
        Repair = 32 => "repair",
        Care = 33 => "care",
        Lessons = 34 => "lessons",
        Help = 35 => "help",
        Services = 63 => "services",
    }
);

impl Category {
    /// Services (repair, care, lessons, help, other services) as opposed to things.
    pub fn is_service(self) -> bool {
        self.code() >= 32
    }
}

code_enum!(
    /// A review's overall rating, and a facet's.
    Rating, "rating" {
        Positive = 1 => "positive",
        Neutral = 2 => "neutral",
        Negative = 3 => "negative",
    }
);

code_enum!(
    /// What a review facet rates.
    Facet, "facet" {
        Communication = 1 => "communication",
        Punctuality = 2 => "punctuality",
        /// The thing or service was as described.
        AsDescribed = 3 => "as_described",
        /// The borrower took care of the thing.
        Care = 4 => "care",
        Friendliness = 5 => "friendliness",
    }
);

code_enum!(
    /// Why a proposal or deal ended without completion.
    CancelReason, "reason" {
        /// The receiver of a proposal said no.
        Declined = 1 => "declined",
        /// The proposer took the proposal back.
        Withdrawn = 2 => "withdrawn",
        /// A party called the deal off before the handover.
        Cancelled = 3 => "cancelled",
        /// The other party did not show up.
        NoShow = 4 => "no_show",
        /// The parties disagree about what happened.
        Dispute = 5 => "dispute",
    }
);

code_enum!(
    /// The state a thing was received in, in an acknowledgement.
    Condition, "condition" {
        AsExpected = 1 => "as_expected",
        Damaged = 2 => "damaged",
        Incomplete = 3 => "incomplete",
    }
);

/// An amount of money in minor units (cents) of an ISO 4217 currency, e.g. a deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount_minor: u32,
    pub currency: Currency,
}

/// Three upper-case ASCII letters (ISO 4217 style; not checked against the ISO list).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(pub [u8; 3]);

impl Currency {
    pub fn check(&self) -> Result<(), RecordError> {
        if self.0.iter().all(|c| c.is_ascii_uppercase()) {
            Ok(())
        } else {
            Err(RecordError::invalid("currency", "must be three upper-case ASCII letters"))
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl FromStr for Currency {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 3 {
            return Err(RecordError::invalid("currency", "must be three upper-case ASCII letters"));
        }
        let c = Currency([b[0], b[1], b[2]]);
        c.check()?;
        Ok(c)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a text field may hold line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    One,
    Many,
}

/// Is this character forbidden in record text? C0 and C1 controls and DEL (terminal escapes), and
/// the bidirectional overrides and isolates (text that displays differently from what it says).
/// Line feed is allowed in multi-line fields; tab is allowed everywhere.
fn forbidden(c: char, lines: Lines) -> bool {
    match c {
        '\t' => false,
        '\n' => lines == Lines::One,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// Checks a text field: byte length within `min..=max`, no forbidden characters.
pub(crate) fn check_text(
    field: &'static str,
    s: &str,
    min: usize,
    max: usize,
    lines: Lines,
) -> Result<(), RecordError> {
    if s.len() > max {
        return Err(RecordError::FieldTooLong { field, len: s.len(), max });
    }
    if s.len() < min {
        return Err(RecordError::FieldEmpty { field });
    }
    if s.chars().any(|c| forbidden(c, lines)) {
        return Err(RecordError::ForbiddenCharacter { field });
    }
    if min > 0 && s.trim().is_empty() {
        return Err(RecordError::FieldEmpty { field });
    }
    Ok(())
}

/// Checks a slug (communities, tags): `a-z`, `0-9` and `-`, not at either end, no `--`.
pub(crate) fn check_slug(field: &'static str, s: &str, max: usize) -> Result<(), RecordError> {
    if s.len() > max {
        return Err(RecordError::FieldTooLong { field, len: s.len(), max });
    }
    if s.is_empty() {
        return Err(RecordError::FieldEmpty { field });
    }
    let ok = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok { Ok(()) } else { Err(RecordError::invalid(field, "must be a slug: a-z, 0-9 and single inner dashes")) }
}

/// Checks a community name: a slug (`a-z`, `0-9`, inner single dashes) of at most 64 bytes.
pub fn check_community(s: &str) -> Result<(), RecordError> {
    check_slug("community", s, crate::limits::MAX_COMMUNITY)
}

/// Checks an optional coarse location: empty, or 1 to 6 geohash characters.
pub(crate) fn check_geohash(field: &'static str, s: &str) -> Result<(), RecordError> {
    if s.len() > crate::limits::MAX_GEOHASH_LEN {
        return Err(RecordError::LocationTooPrecise { len: s.len(), max: crate::limits::MAX_GEOHASH_LEN });
    }
    if !s.bytes().all(|b| crate::geohash::ALPHABET.contains(&b)) {
        return Err(RecordError::invalid(field, "not a geohash (alphabet 0-9 b-h j k m n p-z)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_codes_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()).unwrap(), *k);
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), *k);
        }
        for c in Category::ALL {
            assert_eq!(Category::from_code(c.code()).unwrap(), *c);
        }
        assert!(Kind::from_code(0).is_err());
        assert!(Kind::from_code(7).is_err());
        assert!(Category::Repair.is_service());
        assert!(!Category::Tools.is_service());
        assert_eq!(serde_json::to_string(&Facet::AsDescribed).unwrap(), "\"as_described\"");
    }

    #[test]
    fn text_rules() {
        assert!(check_text("t", "ok\tfine", 1, 10, Lines::One).is_ok());
        assert_eq!(check_text("t", "a\nb", 1, 10, Lines::One).unwrap_err().code(), "forbidden_character");
        assert!(check_text("t", "a\nb", 1, 10, Lines::Many).is_ok());
        assert_eq!(check_text("t", "\u{1b}[2J", 0, 10, Lines::Many).unwrap_err().code(), "forbidden_character");
        assert_eq!(check_text("t", "abc\u{202e}", 0, 10, Lines::Many).unwrap_err().code(), "forbidden_character");
        assert_eq!(check_text("t", "   ", 1, 10, Lines::One).unwrap_err().code(), "field_empty");
        assert_eq!(check_text("t", "", 1, 10, Lines::One).unwrap_err().code(), "field_empty");
        assert_eq!(check_text("t", "abcdef", 0, 5, Lines::One).unwrap_err().code(), "field_too_long");
    }

    #[test]
    fn slug_and_geohash_rules() {
        assert!(check_slug("c", "north-end-2", 64).is_ok());
        for bad in ["", "-a", "a-", "a--b", "A", "a b", "é"] {
            assert!(check_slug("c", bad, 64).is_err(), "{bad}");
        }
        assert!(check_geohash("g", "").is_ok());
        assert!(check_geohash("g", "u09tvw").is_ok());
        assert_eq!(check_geohash("g", "u09tvwq").unwrap_err().code(), "location_too_precise");
        assert_eq!(check_geohash("g", "u09a").unwrap_err().code(), "invalid_value");
    }
}
