//! The deal endpoints (`docs/api.md`, section Deals): propose, accept, decline, withdraw, counter,
//! handover, acknowledge, return, complete, cancel, extend (request, accept, decline), review
//! (blind: a commitment now, revealed by the node later), list and show deals, the inbox, and
//! blocking. Each handler calls one deal action of the node ([`crate::deals::actions`]).
//!
//! `{deal}` is the id of any record of the deal (its proposal, agreement, a step ...), in full or
//! as a prefix of at least 8 hex digits of one of your deals' proposals or agreements.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use troc_protocol::{CancelReason, Condition, FacetRating, Kind, Proposal, PublicKey, Rating, RecordId, SignedRecord};

use super::AppState;
use super::error::ApiError;
use super::listings::{self, now};
use super::routes::{ApiJson, ApiPath, blocking};
use crate::deals::DealError;
use crate::deals::actions::Step;
use crate::deals::state::DealView;
use crate::trust::TrustView;

/// The shortest id prefix accepted for `{deal}`.
const MIN_DEAL_PREFIX: usize = 8;
const DAY: u64 = 24 * 3600;

impl From<DealError> for ApiError {
    fn from(e: DealError) -> Self {
        let message = super::error::chain(&e);
        match &e {
            DealError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            DealError::NotAParty => ApiError::new(StatusCode::FORBIDDEN, "not_a_party", message),
            DealError::Blocked(_) => ApiError::new(StatusCode::FORBIDDEN, "blocked", message),
            DealError::Invalid(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            DealError::Refused { code, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", message).with_detail(code.clone())
            }
            DealError::Record(r) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_record", message).with_detail(r.code())
            }
            DealError::Store(crate::store::StoreError::OutboxFull) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "outbox_full", message)
            }
            DealError::Store(crate::store::StoreError::LocalFull { .. }) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "local_full", message)
            }
            DealError::Node(crate::NodeError::ShutDown) => ApiError::unavailable(),
            DealError::Store(_) | DealError::Node(_) => ApiError::internal(message),
        }
    }
}

fn record_json(r: &SignedRecord) -> Value {
    serde_json::to_value(r.to_json()).unwrap_or(Value::Null)
}

fn deal_json(v: &DealView) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Resolves `{deal}` to a deal view.
fn resolve(state: &AppState, reference: &str) -> Result<DealView, ApiError> {
    let lower = reference.to_ascii_lowercase();
    if lower.len() < MIN_DEAL_PREFIX || lower.len() > 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{reference:?} is not a deal id (64 hex digits, or a prefix of at least {MIN_DEAL_PREFIX})"
        )));
    }
    if let Ok(id) = lower.parse::<RecordId>() {
        return Ok(state.node.deal(&id)?);
    }
    let found: Vec<DealView> = state
        .node
        .deals()?
        .into_iter()
        .filter(|v| [Some(v.id), v.proposal, v.agreement].iter().flatten().any(|id| id.to_string().starts_with(&lower)))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().ok_or_else(|| ApiError::not_found("no such deal"))?),
        0 => Err(ApiError::not_found(format!("no deal of yours starts with {reference:?}"))),
        n => Err(ApiError::bad_request(format!("{reference:?} matches {n} deals: give more digits"))),
    }
}

async fn resolved(state: &AppState, reference: String) -> Result<DealView, ApiError> {
    let st = state.clone();
    blocking(move || resolve(&st, &reference)).await
}

fn agreement_of(v: &DealView) -> Result<RecordId, ApiError> {
    v.agreement.ok_or_else(|| ApiError::conflict(format!("the deal is not agreed yet ({})", v.status.as_str())))
}

fn proposal_of(v: &DealView) -> Result<RecordId, ApiError> {
    match (v.agreement, v.proposal) {
        (None, Some(p)) => Ok(p),
        _ => Err(ApiError::conflict(format!("the deal is past negotiating ({})", v.status.as_str()))),
    }
}

/// `POST /v1/deals`: propose a deal about a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDeal {
    /// The listing (as `GET /v1/listings/{listing}` takes it).
    listing: String,
    /// When (Unix seconds); default now.
    pub(crate) start: Option<u64>,
    /// When the thing comes back (lend, share); or `days` after the start.
    pub(crate) end: Option<u64>,
    pub(crate) days: Option<u64>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    in_return: String,
    /// Default: the listing's kind (a `want` is answered with a `give`).
    kind: Option<Kind>,
}

/// `POST /v1/deals/{deal}/counter`: the same fields, the listing's left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Counter {
    pub(crate) start: Option<u64>,
    pub(crate) end: Option<u64>,
    pub(crate) days: Option<u64>,
    message: Option<String>,
    in_return: Option<String>,
}

/// `t + secs`, or a client error when a time given in a request is so late that it overflows (found
/// while writing the `api` fuzz target, whose check trips on it: `{"start": 18446744073709551615,
/// "days": 1}` panicked in a debug build and wrapped to an end before the start in a release build).
fn later(t: u64, secs: u64) -> Result<u64, ApiError> {
    t.checked_add(secs).ok_or_else(|| ApiError::bad_request(format!("{t} is too far in the future")))
}

pub(crate) fn end_of(start: u64, end: Option<u64>, days: Option<u64>) -> Result<Option<u64>, ApiError> {
    match (end, days) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give end or days, not both")),
        (Some(e), None) => Ok(Some(e)),
        (None, Some(d)) if (1..=365).contains(&d) => Ok(Some(later(start, d * DAY)?)),
        (None, Some(_)) => Err(ApiError::bad_request("days must be 1 to 365")),
        (None, None) => Ok(None),
    }
}

pub(crate) async fn propose(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewDeal>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let st = state.clone();
    let reference = body.listing.clone();
    let listing = blocking(move || listings::resolve(&st, &reference)).await?;
    let l = listing.body();
    let start = body.start.unwrap_or_else(now);
    let kind = body.kind.unwrap_or(if l.kind == Kind::Want { Kind::Give } else { l.kind });
    let mut end = end_of(start, body.end, body.days)?;
    if end.is_none() && kind == Kind::Lend {
        let days = u64::from(l.terms.max_loan_days.unwrap_or(7));
        end = Some(later(start, days * DAY)?);
    }
    let proposal = Proposal {
        counterparty: *listing.author(),
        listing_author: *listing.author(),
        listing_key: l.key,
        listing_revision: l.revision,
        kind,
        start,
        end,
        message: body.message,
        in_return: body.in_return,
        supersedes: None,
    };
    let id = state.node.propose(proposal).await?.id();
    let st = state.clone();
    let view = blocking(move || Ok(st.node.deal(&id)?)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "proposal": id, "deal": deal_json(&view) }))))
}

/// The other party's standing in this node's view, added to a deal's JSON when the reputation view
/// is at hand (it is cached: a deal list does not recompute it).
fn add_standing(v: &mut Value, deal: &DealView, me: &PublicKey, view: Option<&TrustView>) {
    if let Some(view) = view {
        let other = if deal.proposer == *me { deal.receiver } else { deal.proposer };
        v["counterparty_standing"] = json!(view.person(&other).standing);
    }
}

/// The reputation view, if it can be had (a failure leaves the standing out, not the deals).
async fn standing_view(state: &AppState) -> Option<std::sync::Arc<TrustView>> {
    match state.node.reputation_view().await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %super::error::chain(&e), "no reputation view for the deal list");
            None
        }
    }
}

pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let view = standing_view(&state).await;
    blocking(move || {
        let me = *state.node.identity().public();
        let deals: Vec<Value> = state
            .node
            .deals()?
            .iter()
            .map(|d| {
                let mut v = deal_json(d);
                add_standing(&mut v, d, &me, view.as_deref());
                v
            })
            .collect();
        Ok(Json(json!({ "deals": deals })))
    })
    .await
}

pub(crate) async fn show(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let trust = standing_view(&state).await;
    blocking(move || {
        let view = resolve(&state, &reference)?;
        let records: Vec<Value> = state
            .node
            .deal_record_list(&view.id)?
            .iter()
            .filter(|r| {
                // A review shows once revealed, never once revoked.
                !matches!(r.body(), troc_protocol::Body::Review(_))
                    || view.reviews.iter().any(|x| x.review == Some(r.id()) && x.state != "revoked")
            })
            .map(record_json)
            .collect();
        let mut v = deal_json(&view);
        add_standing(&mut v, &view, state.node.identity().public(), trust.as_deref());
        v["records"] = json!(records);
        Ok(Json(v))
    })
    .await
}

pub(crate) async fn accept(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let v = resolved(&state, reference).await?;
    let accepted = state.node.accept_proposal(proposal_of(&v)?).await?;
    Ok(Json(json!({ "agreement": accepted.agreement, "agreed": accepted.agreed })))
}

/// An optional note.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Note {
    #[serde(default)]
    note: String,
}

pub(crate) fn optional<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

async fn close(state: AppState, reference: String, body: &[u8], withdraw: bool) -> Result<Json<Value>, ApiError> {
    let note = optional::<Note>(body)?.note;
    let v = resolved(&state, reference).await?;
    let p = proposal_of(&v)?;
    let me = *state.node.identity().public();
    let mine = v.proposal.is_some() && v.waiting_for != Some(me);
    if withdraw != mine {
        return Err(ApiError::conflict(if withdraw {
            "only the proposer withdraws a proposal: decline it instead"
        } else {
            "only the receiver declines a proposal: withdraw it instead"
        }));
    }
    let r = state.node.close_proposal(p, note).await?;
    Ok(Json(json!({ "cancellation": r.id(), "deal": v.id })))
}

pub(crate) async fn decline(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    close(state, reference, &body, false).await
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    close(state, reference, &body, true).await
}

pub(crate) async fn counter(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let c = optional::<Counter>(&body)?;
    let v = resolved(&state, reference).await?;
    let of = proposal_of(&v)?;
    let st = state.clone();
    let current = blocking(move || {
        st.node
            .store()
            .get(&of)?
            .and_then(|r| r.downcast::<Proposal>().ok())
            .ok_or_else(|| ApiError::not_found("the proposal is gone"))
    })
    .await?;
    let b = current.body();
    let start = c.start.unwrap_or(b.start);
    let end = match end_of(start, c.end, c.days)? {
        Some(e) => Some(e),
        None => b.end.map(|e| later(start, e.saturating_sub(b.start))).transpose()?,
    };
    let proposal = Proposal {
        start,
        end,
        message: c.message.unwrap_or_default(),
        in_return: c.in_return.unwrap_or_else(|| b.in_return.clone()),
        ..b.clone()
    };
    let p = state.node.counter(of, proposal).await?;
    Ok((StatusCode::CREATED, Json(json!({ "proposal": p.id(), "supersedes": of }))))
}

async fn step(state: AppState, reference: String, body: &[u8], step: Step) -> Result<Json<Value>, ApiError> {
    let note = optional::<Note>(body)?.note;
    let v = resolved(&state, reference).await?;
    let r = state.node.deal_step(agreement_of(&v)?, step, note).await?;
    Ok(Json(json!({ "record": record_json(&r) })))
}

pub(crate) async fn handover(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    step(state, reference, &body, Step::Handover).await
}

pub(crate) async fn give_back(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    step(state, reference, &body, Step::Return).await
}

pub(crate) async fn complete(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    step(state, reference, &body, Step::Complete).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ack {
    subject: Option<RecordId>,
    condition: Option<Condition>,
    #[serde(default)]
    note: String,
}

pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let a = optional::<Ack>(&body)?;
    let v = resolved(&state, reference).await?;
    let condition = a.condition.unwrap_or(Condition::AsExpected);
    let r = state.node.acknowledge(agreement_of(&v)?, a.subject, condition, a.note).await?;
    Ok(Json(json!({ "record": record_json(&r) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cancel {
    reason: CancelReason,
    #[serde(default)]
    note: String,
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    ApiJson(body): ApiJson<Cancel>,
) -> Result<Json<Value>, ApiError> {
    let v = resolved(&state, reference).await?;
    let r = state.node.cancel_deal(agreement_of(&v)?, body.reason, body.note).await?;
    Ok(Json(json!({ "record": record_json(&r) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Extend {
    pub(crate) due: Option<u64>,
    /// Days added to the current due date.
    pub(crate) days: Option<u64>,
}

pub(crate) async fn extend(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    ApiJson(body): ApiJson<Extend>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let v = resolved(&state, reference).await?;
    let current = v.due.ok_or_else(|| ApiError::conflict("this deal has no due date"))?;
    let due = match (body.due, body.days) {
        (Some(d), None) => d,
        (None, Some(n)) if (1..=365).contains(&n) => later(current, n * DAY)?,
        _ => return Err(ApiError::bad_request("give due or days (1 to 365), one of them")),
    };
    let id = state.node.request_extension(agreement_of(&v)?, due).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "request": id, "new_due": due }))))
}

pub(crate) async fn accept_extension(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RecordId>,
) -> Result<Json<Value>, ApiError> {
    let r = state.node.accept_extension(id).await?;
    Ok(Json(json!({ "record": record_json(&r) })))
}

pub(crate) async fn decline_extension(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RecordId>,
) -> Result<StatusCode, ApiError> {
    blocking(move || Ok(state.node.decline_extension(id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewReview {
    rating: Rating,
    #[serde(default)]
    facets: Vec<FacetRating>,
    #[serde(default)]
    text: String,
}

pub(crate) async fn review(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    ApiJson(body): ApiJson<NewReview>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let v = resolved(&state, reference).await?;
    let (commitment, review) = state.node.review(agreement_of(&v)?, body.rating, body.facets, body.text).await?;
    Ok((StatusCode::CREATED, Json(json!({ "commitment": commitment.id(), "review": review, "state": "hidden" }))))
}

pub(crate) async fn inbox(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    blocking(move || Ok(Json(json!({ "items": state.node.inbox()? })))).await
}

pub(crate) async fn blocked(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    blocking(move || Ok(Json(json!({ "blocked": state.node.blocked()? })))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Person {
    person: PublicKey,
}

pub(crate) async fn block(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Person>,
) -> Result<Json<Value>, ApiError> {
    let added = blocking(move || Ok(state.node.block(&body.person)?)).await?;
    Ok(Json(json!({ "person": body.person, "blocked": true, "changed": added })))
}

pub(crate) async fn unblock(
    State(state): State<AppState>,
    ApiPath(person): ApiPath<PublicKey>,
) -> Result<Json<Value>, ApiError> {
    let removed = blocking(move || Ok(state.node.unblock(&person)?)).await?;
    Ok(Json(json!({ "person": person, "blocked": false, "changed": removed })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (the `api` fuzz target): a start at the end of time with `days` is a client
    /// error, not an overflow.
    #[test]
    fn end_of_a_start_at_the_end_of_time_is_a_bad_request() {
        let e = end_of(u64::MAX, None, Some(1)).expect_err("overflows");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(end_of(10, None, Some(1)).expect("fits"), Some(10 + DAY));
        assert!(later(u64::MAX - 5, 6).is_err());
    }
}
