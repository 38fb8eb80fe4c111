//! The reputation endpoints (`docs/api.md`, section Reputation): a person's reputation in this
//! node's view (`GET /v1/reputation/{peer}`, `?explain=true` adds the strongest paths of trust),
//! the best-ranked people (`GET /v1/reputation?limit=`), vouches (`POST` and `GET /v1/vouches`) and
//! revocations (`POST /v1/records/{id}/revoke`). Each handler calls the node's reputation service
//! ([`crate::reputation`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use troc_protocol::{PublicKey, RecordId};

use super::AppState;
use super::error::ApiError;
use super::routes::{ApiJson, ApiPath, ApiQuery, blocking};
use crate::reputation::{MAX_PATHS, MAX_TOP, ReputationError, ViewInfo};
use crate::store::Store;
use crate::trust::{Explanation, PersonTrust};

/// How many people `GET /v1/reputation` lists without `limit`.
pub const DEFAULT_TOP: usize = 20;
/// How many paths `?explain=true` gives without `paths`.
pub const DEFAULT_PATHS: usize = 3;
/// The longest revocation reason accepted (the protocol's `MAX_NOTE`).
pub(crate) const MAX_REASON: usize = troc_protocol::limits::MAX_NOTE;

impl From<ReputationError> for ApiError {
    fn from(e: ReputationError) -> Self {
        let message = super::error::chain(&e);
        match &e {
            ReputationError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            ReputationError::NotYours(_) => ApiError::new(StatusCode::FORBIDDEN, "not_yours", message),
            ReputationError::NotRevocable(_) => ApiError::new(StatusCode::CONFLICT, "not_revocable", message),
            ReputationError::BuiltOn(_) => ApiError::new(StatusCode::CONFLICT, "already_built_on", message),
            ReputationError::Invalid(_) => ApiError::bad_request(message),
            ReputationError::Refused { code, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", message).with_detail(code.clone())
            }
            ReputationError::Record(r) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_record", message).with_detail(r.code())
            }
            ReputationError::ShutDown => ApiError::unavailable(),
            ReputationError::Store(_) | ReputationError::Task(_) => ApiError::internal(message),
        }
    }
}

pub(crate) fn parse_peer(s: &str) -> Result<PublicKey, ApiError> {
    if s.len() > 128 {
        return Err(ApiError::bad_request("not a peer id: too long"));
    }
    s.parse().map_err(|e| ApiError::bad_request(format!("{s:?} is not a peer id: {e}")))
}

/// A person's display name, from their current profile (empty if none).
fn name_of(store: &Store, who: &PublicKey) -> Result<String, ApiError> {
    Ok(store.profile(who)?.map(|p| p.body().name.clone()).unwrap_or_default())
}

/// One person as the API shows them.
fn person_json(store: &Store, p: &PersonTrust) -> Result<Value, ApiError> {
    Ok(json!({
        "peer_id": p.identity,
        "short": p.identity.short(),
        "name": name_of(store, &p.identity)?,
        "standing": p.standing,
        "score": p.score,
        "rank": p.rank,
        "evidence": p.evidence,
    }))
}

fn view_json(v: &ViewInfo) -> Value {
    json!({
        "computed_at": v.computed_at,
        "pending": v.pending,
        "identities": v.stats.identities,
        "established": v.stats.established,
    })
}

/// The paths, and the name and short id of everyone on them.
fn explanation_json(store: &Store, e: &Explanation) -> Result<Value, ApiError> {
    let mut people = BTreeMap::new();
    for hop in e.paths.iter().flat_map(|p| &p.hops) {
        for who in [hop.from, hop.to] {
            if let std::collections::btree_map::Entry::Vacant(slot) = people.entry(who.to_string()) {
                slot.insert(json!({ "short": who.short(), "name": name_of(store, &who)? }));
            }
        }
    }
    Ok(json!({ "paths": e.paths, "people": people }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShowParams {
    #[serde(default)]
    explain: bool,
    /// With `explain`: how many paths (1 to [`MAX_PATHS`]).
    paths: Option<usize>,
}

/// `GET /v1/reputation/{peer}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    ApiPath(peer): ApiPath<String>,
    ApiQuery(params): ApiQuery<ShowParams>,
) -> Result<Json<Value>, ApiError> {
    let who = parse_peer(&peer)?;
    let paths = match (params.explain, params.paths) {
        (false, Some(_)) => return Err(ApiError::bad_request("paths goes with explain=true")),
        (false, None) => 0,
        (true, None) => DEFAULT_PATHS,
        (true, Some(n)) if (1..=MAX_PATHS).contains(&n) => n,
        (true, Some(_)) => return Err(ApiError::bad_request(format!("paths must be 1 to {MAX_PATHS}"))),
    };
    let rep = state.node.reputation(&who, paths).await?;
    blocking(move || {
        let store = state.node.store();
        let mut v = person_json(store, &rep.person)?;
        v["blocked"] = json!(store.is_blocked(&who)?);
        v["view"] = view_json(&rep.view);
        if let Some(e) = &rep.explanation {
            v["explanation"] = explanation_json(store, e)?;
        }
        Ok(Json(v))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopParams {
    limit: Option<usize>,
}

/// `GET /v1/reputation`.
pub(crate) async fn top(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<TopParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_TOP);
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_TOP}")));
    }
    let top = state.node.reputation_top(limit).await?;
    blocking(move || {
        let store = state.node.store();
        let people = top.people.iter().map(|p| person_json(store, p)).collect::<Result<Vec<_>, _>>()?;
        Ok(Json(json!({ "people": people, "view": view_json(&top.view) })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewVouch {
    /// The person vouched for.
    pub(crate) subject: String,
    /// How you know them (1 to 200 characters).
    context: String,
    /// How long it runs (1 to 730 days; default 365).
    days: Option<u64>,
}

/// `POST /v1/vouches`.
pub(crate) async fn vouch(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewVouch>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let subject = parse_peer(&body.subject)?;
    let v = state.node.vouch(&subject, &body.context, body.days).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": v.id(),
            "subject": subject,
            "context": v.body().context,
            "created_at": v.created_at(),
            "expires_at": v.body().expires_at,
        })),
    ))
}

/// `GET /v1/vouches`.
pub(crate) async fn vouches(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let v = state.node.vouches()?;
        let store = state.node.store();
        let named = |list: &[crate::reputation::VouchInfo], other: fn(&crate::reputation::VouchInfo) -> PublicKey| {
            list.iter()
                .map(|x| {
                    let mut j = serde_json::to_value(x).map_err(|e| ApiError::internal(e.to_string()))?;
                    j["name"] = json!(name_of(store, &other(x))?);
                    Ok(j)
                })
                .collect::<Result<Vec<Value>, ApiError>>()
        };
        let given = named(&v.given, |x| x.subject)?;
        let received = named(&v.received, |x| x.author)?;
        Ok(Json(json!({ "given": given, "received": received })))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Revoke {
    #[serde(default)]
    pub(crate) reason: String,
}

/// `POST /v1/records/{id}/revoke` (the body, `{"reason": ...}`, is optional): the answer says what
/// the revocation did (`effect`, see [`crate::reputation::RevokeEffect`]).
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id: RecordId =
        id.parse().map_err(|_| ApiError::bad_request(format!("{id:?} is not a record id (64 hex digits)")))?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        serde_json::from_slice::<Revoke>(&body)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?
            .reason
    };
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(format!("the reason is over {MAX_REASON} characters")));
    }
    let r = state.node.revoke(&id, &reason).await?;
    // `revocation` is the record that revokes: a revocation, or for a proposal the cancellation
    // that withdraws it (`record_type` says which).
    Ok(Json(json!({
        "revocation": r.record.id(),
        "record_type": r.record.record_type().name(),
        "target": id,
        "created_at": r.record.created_at(),
        "effect": r.effect.as_str(),
    })))
}
