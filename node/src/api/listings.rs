//! Listings through the API: what a client sends to create or edit one, how a listing is shown
//! (`docs/api.md`, "A listing as the API shows it"), how a `{listing}` path segment is resolved, and
//! the profile the node publishes for its person.
//!
//! Everything here signs with the node's identity through [`NodeHandle::sign_and_publish`], so an
//! API listing takes the same ingest path (checks, store, gossip) as any other record.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use troc_protocol::{
    Category, Kind, Listing, ListingKey, Profile, PublicKey, RecordBody, RecordId, Signed, Terms, Timestamp,
    Withdrawal, geohash,
};

use super::error::ApiError;
use super::{AppState, LocalProfile};
use crate::NodeHandle;
use crate::ingest::ItemResult;
use crate::now_secs;

/// How long a listing stays valid when the request does not say.
pub const DEFAULT_VALID_DAYS: u32 = 30;
/// The longest validity a request may ask for (the protocol allows 180 days; renewing is cheap).
pub const MAX_VALID_DAYS: u32 = 90;
/// Geohash characters a `"lat,lon"` location is coarsened to (a cell of about 5 km × 5 km).
pub const COARSE_GEOHASH_LEN: usize = 5;
/// The shortest listing id prefix accepted in a path.
pub const MIN_PREFIX: usize = 6;

/// `POST /v1/listings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewListing {
    pub kind: Kind,
    pub category: Category,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub terms: Terms,
    pub community: Option<String>,
    pub location: Option<String>,
    pub available_from: Option<Timestamp>,
    pub available_until: Option<Timestamp>,
    pub valid_for_days: Option<u32>,
}

/// `PATCH /v1/listings/{listing}`: the fields to change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingEdit {
    pub category: Option<Category>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub terms: Option<Terms>,
    pub community: Option<String>,
    pub location: Option<String>,
    pub available_from: Option<Timestamp>,
    pub available_until: Option<Timestamp>,
    pub valid_for_days: Option<u32>,
}

/// `POST /v1/listings/{listing}/renew`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renew {
    pub valid_for_days: Option<u32>,
}

/// `POST /v1/listings/{listing}/withdraw`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    #[serde(default)]
    pub reason: String,
}

/// A location as a request gives it: a geohash (kept as given, at most 6 characters) or `"lat,lon"`
/// (coarsened to [`COARSE_GEOHASH_LEN`] characters, so the exact position is never stored).
pub fn parse_location(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    if let Some((lat, lon)) = s.split_once(',') {
        let lat: f64 = lat.trim().parse().map_err(|_| ApiError::bad_request(format!("bad latitude in {s:?}")))?;
        let lon: f64 = lon.trim().parse().map_err(|_| ApiError::bad_request(format!("bad longitude in {s:?}")))?;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(ApiError::bad_request(format!(
                "{s:?} is not a position: latitude -90..90, longitude -180..180"
            )));
        }
        return Ok(geohash::encode(lat, lon, COARSE_GEOHASH_LEN));
    }
    let lower = s.to_ascii_lowercase();
    if lower.len() > troc_protocol::limits::MAX_GEOHASH_LEN || geohash::bounds(&lower).is_none() {
        return Err(ApiError::bad_request(format!(
            "{s:?} is not a location: give \"lat,lon\" or a geohash of 1 to {} characters",
            troc_protocol::limits::MAX_GEOHASH_LEN
        )));
    }
    Ok(lower)
}

fn valid_until(now: Timestamp, days: Option<u32>) -> Result<Timestamp, ApiError> {
    let days = days.unwrap_or(DEFAULT_VALID_DAYS);
    if days == 0 || days > MAX_VALID_DAYS {
        return Err(ApiError::bad_request(format!("valid_for_days must be 1 to {MAX_VALID_DAYS}")));
    }
    Ok(now + u64::from(days) * 86_400)
}

/// An end of availability already past would publish a listing nobody can ever take up: refused
/// here, where the clock is known (the protocol has no clock, so peers' records are not held to it).
fn check_available_until(until: Option<Timestamp>, now: Timestamp) -> Result<(), ApiError> {
    match until {
        Some(t) if t <= now => Err(ApiError::bad_request(format!("available_until is in the past ({t} <= now {now})"))),
        _ => Ok(()),
    }
}

fn random_key() -> Result<ListingKey, ApiError> {
    let mut k = [0u8; 16];
    getrandom::fill(&mut k).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(ListingKey(k))
}

/// Signs and publishes `body`, and turns the ingest result into an answer.
pub async fn publish<T: RecordBody>(node: &NodeHandle, body: T) -> Result<Signed<T>, ApiError> {
    let (record, result) = node.sign_and_publish(body).await?;
    match result {
        ItemResult::Stored { .. } | ItemResult::Duplicate { .. } => Ok(record),
        ItemResult::NotKept { reason, .. } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            format!("the store did not keep the record: {reason}"),
        )
        .with_detail(reason)),
        ItemResult::Rejected { code, reason } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_record",
            format!("the record was refused: {reason}"),
        )
        .with_detail(code)),
    }
}

impl NewListing {
    pub fn into_listing(self, profile: &LocalProfile, now: Timestamp) -> Result<Listing, ApiError> {
        let community = match self.community {
            Some(c) => c,
            None => profile.community.clone().ok_or_else(|| {
                ApiError::bad_request("no community given, and the node has none configured (troc.toml)")
            })?,
        };
        let location = match self.location {
            Some(l) => parse_location(&l)?,
            None => profile.location.clone().unwrap_or_default(),
        };
        check_available_until(self.available_until, now)?;
        Ok(Listing {
            key: random_key()?,
            revision: 1,
            kind: self.kind,
            category: self.category,
            title: self.title,
            description: self.description,
            tags: self.tags,
            terms: self.terms,
            community,
            location,
            available_from: self.available_from,
            available_until: self.available_until,
            valid_until: valid_until(now, self.valid_for_days)?,
        })
    }
}

impl ListingEdit {
    /// The next revision of `current` with these changes.
    pub fn apply(self, current: &Listing, now: Timestamp) -> Result<Listing, ApiError> {
        let mut next = current.clone();
        next.revision = current
            .revision
            .checked_add(1)
            .ok_or_else(|| ApiError::conflict("the listing has reached its last revision number"))?;
        if let Some(v) = self.category {
            next.category = v;
        }
        if let Some(v) = self.title {
            next.title = v;
        }
        if let Some(v) = self.description {
            next.description = v;
        }
        if let Some(v) = self.tags {
            next.tags = v;
        }
        if let Some(v) = self.terms {
            next.terms = v;
        }
        if let Some(v) = self.community {
            next.community = v;
        }
        if let Some(v) = self.location {
            next.location = parse_location(&v)?;
        }
        if let Some(v) = self.available_from {
            next.available_from = Some(v);
        }
        if let Some(v) = self.available_until {
            check_available_until(Some(v), now)?;
            next.available_until = Some(v);
        }
        if let Some(days) = self.valid_for_days {
            next.valid_until = valid_until(now, Some(days))?;
        } else if next.valid_until <= now {
            next.valid_until = valid_until(now, None)?;
        }
        Ok(next)
    }
}

/// The next revision of `current`, valid `days` from now.
pub fn renewed(current: &Listing, days: Option<u32>, now: Timestamp) -> Result<Listing, ApiError> {
    ListingEdit { valid_for_days: Some(days.unwrap_or(DEFAULT_VALID_DAYS)), ..ListingEdit::default() }
        .apply(current, now)
}

/// The withdrawal of one's own listing.
pub fn withdrawal(current: &Signed<Listing>, reason: String) -> Withdrawal {
    Withdrawal { listing_author: *current.author(), listing_key: current.body().key, reason }
}

/// The listing `reference` names (an id, a unique id prefix, or `<peer id>:<key hex>`), at its
/// current revision.
pub fn resolve(state: &AppState, reference: &str) -> Result<Signed<Listing>, ApiError> {
    let store = state.node.store();
    let not_found = || ApiError::not_found(format!("no current listing {reference:?}"));
    if let Some((author, key)) = reference.split_once(':') {
        let author: PublicKey =
            author.parse().map_err(|e| ApiError::bad_request(format!("{author:?} is not a peer id: {e}")))?;
        let key: ListingKey =
            key.parse().map_err(|_| ApiError::bad_request(format!("{key:?} is not a listing key (32 hex)")))?;
        return store.latest_listing(&author, &key)?.ok_or_else(not_found);
    }
    let lower = reference.to_ascii_lowercase();
    if lower.len() < MIN_PREFIX || lower.len() > 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{reference:?} is not a listing: give its id, at least {MIN_PREFIX} hex characters of it, or <peer id>:<key>"
        )));
    }
    let candidates: Vec<RecordId> = if lower.len() == 64 {
        vec![lower.parse().map_err(|_| ApiError::bad_request("bad id"))?]
    } else {
        let mut found = Vec::new();
        for id in store.all_ids() {
            let id = id?;
            if hex::encode(id.0).starts_with(&lower) {
                found.push(id);
                if found.len() > 16 {
                    break;
                }
            }
        }
        found
    };
    let mut current = Vec::new();
    for id in candidates {
        if let Some(record) = store.get(&id)?
            && let Ok(listing) = record.downcast::<Listing>()
            && let Some(latest) = store.latest_listing(listing.author(), &listing.body().key)?
            && latest.id() == listing.id()
        {
            current.push(latest);
        }
    }
    match current.len() {
        0 => Err(not_found()),
        1 => Ok(current.remove(0)),
        n => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous",
            format!("{reference:?} matches {n} listings: give more of the id"),
        )),
    }
}

/// The listing `reference` names, which must be one's own.
pub fn resolve_own(state: &AppState, reference: &str) -> Result<Signed<Listing>, ApiError> {
    let listing = resolve(state, reference)?;
    if listing.author() != state.node.identity().public() {
        return Err(ApiError::conflict("this listing is someone else's: only its author can change it"));
    }
    Ok(listing)
}

/// The listing as the API shows it. `near` is the point distances are measured from.
pub fn view(state: &AppState, listing: &Signed<Listing>, near: Option<&str>) -> Value {
    let store = state.node.store();
    let author = listing.author();
    let name = store.profile(author).ok().flatten().map(|p| p.body().name.clone());
    let b = listing.body();
    let mut v = json!({
        "id": listing.id(),
        "address": format!("{author}:{}", b.key),
        "key": b.key,
        "revision": b.revision,
        "author": { "peer_id": author.to_string(), "short": author.short(), "name": name },
        "mine": author == state.node.identity().public(),
        "kind": b.kind,
        "category": b.category,
        "title": b.title,
        "description": b.description,
        "tags": b.tags,
        "terms": b.terms,
        "community": b.community,
        "location": b.location,
        "created_at": listing.created_at(),
        "valid_until": b.valid_until,
        "available_from": b.available_from,
        "available_until": b.available_until,
    });
    let from = near.or(state.profile.location.as_deref());
    if let Some(from) = from
        && !b.location.is_empty()
        && let Some(km) = geohash::distance_km(from, &b.location)
    {
        v["distance_km"] = json!((km * 10.0).round() / 10.0);
        v["distance"] = json!(crate::search::rough_distance(km));
    }
    v
}

/// Publishes the person's profile if the configured name, community or area differ from the
/// stored profile (the `about` and `contact` fields of a stored profile are kept).
pub async fn ensure_profile(node: &NodeHandle, profile: &LocalProfile) -> Result<(), ApiError> {
    if profile.name.is_empty() {
        return Ok(());
    }
    let me = *node.identity().public();
    let store = node.store().clone();
    let stored = tokio::task::spawn_blocking(move || store.profile(&me)).await??;
    let wanted_community = profile.community.clone().unwrap_or_default();
    let wanted_area = profile.location.clone().unwrap_or_default();
    let (about, contact) = match &stored {
        Some(p) => {
            let b = p.body();
            if b.name == profile.name && b.community == wanted_community && b.area == wanted_area {
                return Ok(());
            }
            (b.about.clone(), b.contact.clone())
        }
        None => (String::new(), String::new()),
    };
    let body = Profile { name: profile.name.clone(), community: wanted_community, area: wanted_area, about, contact };
    publish(node, body).await?;
    Ok(())
}

/// One result of `/v1/import`.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub stored: usize,
    pub duplicate: usize,
    pub not_kept: Vec<Value>,
    pub rejected: Vec<Value>,
}

/// The current time, for building records.
pub fn now() -> Timestamp {
    now_secs()
}
