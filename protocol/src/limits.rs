//! Every size, count and time limit of the record format, in one place.
//!
//! `docs/protocol.md` states the same numbers; a test checks that the two agree. Limits are part of
//! format version 1: raising one is a compatible change only for readers, so do it with care.

/// The largest record on the wire, content and signatures together.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// How far `created_at` may be ahead of the receiver's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 10 * 60;

/// The longest a listing may stay valid after it was created (renew by publishing a new revision).
pub const MAX_LISTING_LIFETIME_SECS: u64 = 180 * 24 * 3600;

/// The longest a vouch may run.
pub const MAX_VOUCH_LIFETIME_SECS: u64 = 2 * 365 * 24 * 3600;

/// Geohash characters at most: 6 characters is a cell of about 1.2 km x 0.6 km, never an address.
pub const MAX_GEOHASH_LEN: usize = 6;

/// Display name in a profile, in bytes of UTF-8.
pub const MAX_NAME: usize = 64;
/// A community slug.
pub const MAX_COMMUNITY: usize = 64;
/// A profile's about text.
pub const MAX_ABOUT: usize = 1000;
/// A profile's contact line.
pub const MAX_CONTACT: usize = 200;
/// A listing title.
pub const MAX_TITLE: usize = 120;
/// A listing description.
pub const MAX_DESCRIPTION: usize = 4000;
/// Tags on a listing.
pub const MAX_TAGS: usize = 12;
/// One tag.
pub const MAX_TAG: usize = 32;
/// A listing's conditions of use.
pub const MAX_CONDITIONS: usize = 1000;
/// When a shared thing is available ("weekends, evenings after 6").
pub const MAX_AVAILABILITY: usize = 200;
/// What is wanted (or offered) in return, for swap, barter and want.
pub const MAX_IN_RETURN: usize = 500;
/// The longest loan a lender offers, in days.
pub const MAX_LOAN_DAYS: u16 = 365;
/// Rough hours for a service.
pub const MAX_HOURS: u16 = 1000;
/// A proposal's private message.
pub const MAX_MESSAGE: usize = 2000;
/// A note on a deal step, a withdrawal or a revocation.
pub const MAX_NOTE: usize = 500;
/// A review's text.
pub const MAX_REVIEW_TEXT: usize = 1000;
/// Facets on one review.
pub const MAX_FACETS: usize = 6;
/// A vouch's context ("neighbour for ten years").
pub const MAX_VOUCH_CONTEXT: usize = 200;
