//! The API's routes and handlers (contract: `docs/api.md`), the bearer-token check, and the layers
//! that bound the server: body size, requests in flight (shed with 429), and a timeout per request.
//!
//! Handlers do blocking store reads on tokio's blocking pool (sled is synchronous) and write only
//! through the node's one ingest path.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{BoxError, Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use troc_protocol::{Kind, Listing, PublicKey, Signed};

use super::error::{ApiError, Refused};
use super::events::{StreamFilter, TYPES, stream};
use super::listings::{self, ImportReport, ListingEdit, NewListing, Renew, Withdraw, now, parse_location, view};
use super::local::{Alert, LocalError, MAX_ALERT_NAME, MAX_ALERTS, MAX_COMMUNITIES, MAX_PEERS};
use super::{AppState, MAX_BODY_BYTES, MAX_CONCURRENT_REQUESTS, MAX_IMPORT_BODY_BYTES, MAX_URI_BYTES, REQUEST_TIMEOUT};
use super::{deals, reputation};
use crate::ingest::ItemResult;
use crate::search::{Query as SearchQuery, SearchResults, Sort};

/// The OpenAPI document, served as is.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
/// Records per `/v1/import` request at most.
pub const MAX_IMPORT_RECORDS: usize = 1000;
/// How long `POST /v1/peers` and `/v1/join` wait for a connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// JSON bodies, with axum's rejections turned into [`ApiError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub T);

/// Query strings, likewise.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);

/// Path segments, likewise.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub T);

/// Every route of the API: `(method, path)`, for the test that holds the OpenAPI document to it.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/status"),
    ("get", "/v1/peers"),
    ("post", "/v1/peers"),
    ("get", "/v1/invite"),
    ("post", "/v1/join"),
    ("post", "/v1/listings"),
    ("get", "/v1/listings/{listing}"),
    ("patch", "/v1/listings/{listing}"),
    ("post", "/v1/listings/{listing}/renew"),
    ("post", "/v1/listings/{listing}/withdraw"),
    ("get", "/v1/mine"),
    ("get", "/v1/search"),
    ("get", "/v1/alerts"),
    ("post", "/v1/alerts"),
    ("delete", "/v1/alerts/{id}"),
    ("get", "/v1/events"),
    ("get", "/v1/export"),
    ("post", "/v1/import"),
    ("get", "/v1/deals"),
    ("post", "/v1/deals"),
    ("get", "/v1/deals/{deal}"),
    ("post", "/v1/deals/{deal}/accept"),
    ("post", "/v1/deals/{deal}/decline"),
    ("post", "/v1/deals/{deal}/withdraw"),
    ("post", "/v1/deals/{deal}/counter"),
    ("post", "/v1/deals/{deal}/handover"),
    ("post", "/v1/deals/{deal}/acknowledge"),
    ("post", "/v1/deals/{deal}/return"),
    ("post", "/v1/deals/{deal}/complete"),
    ("post", "/v1/deals/{deal}/cancel"),
    ("post", "/v1/deals/{deal}/extend"),
    ("post", "/v1/deals/{deal}/review"),
    ("post", "/v1/extensions/{id}/accept"),
    ("post", "/v1/extensions/{id}/decline"),
    ("get", "/v1/inbox"),
    ("get", "/v1/blocked"),
    ("post", "/v1/blocked"),
    ("delete", "/v1/blocked/{person}"),
    ("get", "/v1/reputation"),
    ("get", "/v1/reputation/{peer}"),
    ("get", "/v1/vouches"),
    ("post", "/v1/vouches"),
    ("post", "/v1/records/{id}/revoke"),
];

pub(crate) fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers).post(connect))
        .route("/v1/invite", get(invite))
        .route("/v1/join", post(join))
        .route("/v1/listings", post(create_listing))
        .route("/v1/listings/{listing}", get(show_listing).patch(edit_listing))
        .route("/v1/listings/{listing}/renew", post(renew_listing))
        .route("/v1/listings/{listing}/withdraw", post(withdraw_listing))
        .route("/v1/mine", get(mine))
        .route("/v1/search", get(search))
        .route("/v1/alerts", get(list_alerts).post(add_alert))
        .route("/v1/alerts/{id}", delete(remove_alert))
        .route("/v1/events", get(events))
        .route("/v1/deals", get(deals::list).post(deals::propose))
        .route("/v1/deals/{deal}", get(deals::show))
        .route("/v1/deals/{deal}/accept", post(deals::accept))
        .route("/v1/deals/{deal}/decline", post(deals::decline))
        .route("/v1/deals/{deal}/withdraw", post(deals::withdraw))
        .route("/v1/deals/{deal}/counter", post(deals::counter))
        .route("/v1/deals/{deal}/handover", post(deals::handover))
        .route("/v1/deals/{deal}/acknowledge", post(deals::acknowledge))
        .route("/v1/deals/{deal}/return", post(deals::give_back))
        .route("/v1/deals/{deal}/complete", post(deals::complete))
        .route("/v1/deals/{deal}/cancel", post(deals::cancel))
        .route("/v1/deals/{deal}/extend", post(deals::extend))
        .route("/v1/deals/{deal}/review", post(deals::review))
        .route("/v1/extensions/{id}/accept", post(deals::accept_extension))
        .route("/v1/extensions/{id}/decline", post(deals::decline_extension))
        .route("/v1/inbox", get(deals::inbox))
        .route("/v1/blocked", get(deals::blocked).post(deals::block))
        .route("/v1/blocked/{person}", delete(deals::unblock))
        .route("/v1/reputation", get(reputation::top))
        .route("/v1/reputation/{peer}", get(reputation::show))
        .route("/v1/vouches", get(reputation::vouches).post(reputation::vouch))
        .route("/v1/records/{id}/revoke", post(reputation::revoke))
        .route("/v1/export", get(export))
        .route("/v1/import", post(import).layer(DefaultBodyLimit::max(MAX_IMPORT_BODY_BYTES)))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let routes = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such route (see /v1/openapi.json)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route takes another method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state.clone());
    // The bounds go around the whole router as one service: `Router::layer` applies a layer route by
    // route, which would give every route its own concurrency limit (64 per route, thousands in all).
    let bounded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded))
        .load_shed()
        .concurrency_limit(MAX_CONCURRENT_REQUESTS)
        .timeout(REQUEST_TIMEOUT)
        .service(routes);
    Router::new()
        .fallback_service(bounded)
        .layer(middleware::from_fn(bound_uri))
        // Outermost, so the 429s and timeouts of the bounds are counted too.
        .layer(middleware::map_response_with_state(state, count_refusals))
}

/// Refuses a request target over [`MAX_URI_BYTES`] before anything parses it.
async fn bound_uri(request: Request, next: Next) -> Response {
    let len = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {len} bytes long; at most {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Counts every refused request in the node's metrics (`api_refused`, by error code).
async fn count_refusals(State(state): State<AppState>, response: Response) -> Response {
    if let Some(Refused(code)) = response.extensions().get::<Refused>() {
        state.node.count_api_refusal(code);
    }
    response
}

async fn overloaded(err: BoxError) -> ApiError {
    if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "too many requests at once: retry shortly")
    } else if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long")
    } else {
        ApiError::internal(err.to_string())
    }
}

/// Checks `Authorization: Bearer <token>` in constant time.
async fn auth(State(state): State<AppState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let mut token = [0u8; 32];
    let ok = given.is_some_and(|g| hex::decode_to_slice(g, &mut token).is_ok())
        && token.iter().zip(state.token.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !ok {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "ok": true, "peer_id": state.node.peer_id().to_base58(), "version": env!("CARGO_PKG_VERSION") }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusParams {
    /// Also check that the store's in-memory indexes agree with its records (`Store::check_indexes`):
    /// a full read of the store, for diagnostics and the crash tests.
    #[serde(default)]
    check: bool,
}

async fn status(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<StatusParams>,
) -> Result<Json<Value>, ApiError> {
    let me = state.node.identity().public();
    let listen = state.node.dial_addrs().await?;
    let peers = state.node.peers().await?.len();
    let store = state.node.store().clone();
    let open_repair = store.open_repair();
    let stats = blocking(move || Ok(store.stats()?)).await?;
    let check = if params.check {
        let store = state.node.store().clone();
        Some(blocking(move || Ok(store.check_indexes()?)).await?)
    } else {
        None
    };
    let now = now();
    let mut body = json!({
        "peer_id": me.to_string(),
        "short": me.short(),
        "public_key": hex::encode(me.as_bytes()),
        "name": state.profile.name,
        "community": state.profile.community,
        "location": state.profile.location,
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": state.started_at,
        "uptime_secs": now.saturating_sub(state.started_at),
        "api_address": state.api_addr.to_string(),
        "listen_addresses": listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "communities": state.node.scopes(),
        "peers": peers,
        "store": {
            "records": stats.records,
            "listings": stats.live_listings,
            "bytes": stats.record_bytes,
            "size_on_disk": stats.size_on_disk,
            "refused_ids": stats.refused_ids,
            "open_repair": open_repair,
        },
        "metrics": state.node.metrics(),
    });
    if let Some(check) = check {
        body["store"]["check"] = json!(check);
    }
    Ok(Json(body))
}

async fn peers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let peers = state.node.peers().await?;
    let list: Vec<Value> = peers
        .iter()
        .map(|p| {
            let short = PublicKey::from_peer_id(&p.peer_id).map(|k| k.short()).unwrap_or_default();
            json!({
                "peer_id": p.peer_id.to_base58(),
                "short": short,
                "address": p.addresses.first(),
                "agent": p.agent,
                "score": p.score,
                "relayed": p.relayed,
            })
        })
        .collect();
    Ok(Json(json!({ "peers": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectBody {
    pub(crate) address: String,
}

async fn connect(State(state): State<AppState>, ApiJson(body): ApiJson<ConnectBody>) -> Result<Json<Value>, ApiError> {
    let addr: libp2p::Multiaddr = body
        .address
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{:?} is not a multiaddr: {e}", body.address)))?;
    let peer = dial(&state, addr).await?;
    Ok(Json(json!({ "peer_id": peer.to_base58() })))
}

async fn dial(state: &AppState, addr: libp2p::Multiaddr) -> Result<libp2p::PeerId, ApiError> {
    match tokio::time::timeout(DIAL_TIMEOUT, state.node.dial(addr.clone())).await {
        Ok(Ok(peer)) => Ok(peer),
        Ok(Err(crate::NodeError::ShutDown)) => Err(ApiError::unavailable()),
        Ok(Err(e)) => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, "dial_failed", format!("could not reach {addr}: {e}")))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "dial_failed",
            format!("could not reach {addr} within {}s", DIAL_TIMEOUT.as_secs()),
        )),
    }
}

/// What an invite carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteBody {
    v: u32,
    peer_id: String,
    addresses: Vec<String>,
    #[serde(default)]
    communities: Vec<String>,
}

const INVITE_PREFIX: &str = "troc1";
/// The longest invite accepted.
const MAX_INVITE: usize = 4096;

async fn invite(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut addrs = state.node.dial_addrs().await?;
    // Loopback last: it only works on this machine.
    addrs.sort_by_key(|a| {
        a.iter().any(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
            libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
            _ => false,
        })
    });
    let addresses: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let communities: Vec<String> =
        state.node.scopes().iter().filter_map(|s| s.strip_prefix("community/").map(str::to_owned)).collect();
    let body = InviteBody { v: 1, peer_id: state.node.peer_id().to_base58(), addresses, communities };
    let encoded = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
    let invite = format!("{INVITE_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(encoded));
    Ok(Json(json!({
        "peer_id": body.peer_id,
        "addresses": body.addresses,
        "communities": body.communities,
        "invite": invite,
    })))
}

pub(crate) fn decode_invite(s: &str) -> Result<InviteBody, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("not a troc invite: {why}"));
    let s = s.trim();
    if s.len() > MAX_INVITE {
        return Err(bad("too long"));
    }
    let rest = s.strip_prefix(INVITE_PREFIX).ok_or_else(|| bad("it must start with troc1"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(rest).map_err(|_| bad("bad base64"))?;
    let body: InviteBody = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
    if body.v != 1 {
        return Err(bad(&format!("version {} is not supported", body.v)));
    }
    if body.addresses.is_empty() || body.addresses.len() > 16 || body.communities.len() > 16 {
        return Err(bad("1 to 16 addresses and at most 16 communities"));
    }
    let peer: libp2p::PeerId = body.peer_id.parse().map_err(|_| bad("bad peer id"))?;
    for a in &body.addresses {
        let addr: libp2p::Multiaddr = a.parse().map_err(|_| bad(&format!("bad address {a:?}")))?;
        match addr.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) if p == peer => {}
            _ => return Err(bad(&format!("address {a:?} does not end in /p2p/{peer}"))),
        }
    }
    for c in &body.communities {
        troc_protocol::types::check_community(c).map_err(|e| bad(&format!("community {c:?}: {e}")))?;
    }
    Ok(body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinBody {
    pub(crate) invite: String,
}

async fn join(State(state): State<AppState>, ApiJson(body): ApiJson<JoinBody>) -> Result<Json<Value>, ApiError> {
    let invite = decode_invite(&body.invite)?;
    if invite.peer_id == state.node.peer_id().to_base58() {
        return Err(ApiError::conflict("this is this node's own invite"));
    }
    let local = state.local.clone();
    let remembered = invite.clone();
    blocking(move || {
        local
            .update(|s| {
                for c in &remembered.communities {
                    if !s.communities.contains(c) {
                        if s.communities.len() >= MAX_COMMUNITIES {
                            return Err(LocalError::Invalid {
                                path: "local.json".into(),
                                reason: format!("at most {MAX_COMMUNITIES} communities"),
                            });
                        }
                        s.communities.push(c.clone());
                    }
                }
                for a in &remembered.addresses {
                    if !s.peers.contains(a) {
                        if s.peers.len() >= MAX_PEERS {
                            s.peers.remove(0);
                        }
                        s.peers.push(a.clone());
                    }
                }
                Ok(())
            })
            .map_err(|e| ApiError::conflict(super::error::chain(&e)))
    })
    .await?;
    for c in &invite.communities {
        state.node.follow(c).await?;
    }
    let mut connected = false;
    for a in &invite.addresses {
        let Ok(addr) = a.parse::<libp2p::Multiaddr>() else { continue };
        if let Err(e) = state.node.add_bootstrap(addr.clone()).await {
            tracing::warn!(address = %a, error = %e, "could not keep an invited peer connected");
        }
        if !connected && dial(&state, addr).await.is_ok() {
            connected = true;
        }
    }
    Ok(Json(json!({ "peer_id": invite.peer_id, "connected": connected, "communities": invite.communities })))
}

async fn create_listing(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewListing>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let listing = body.into_listing(&state.profile, now())?;
    let signed = listings::publish(&state.node, listing).await?;
    let st = state.clone();
    let shown = blocking(move || Ok(view(&st, &signed, None))).await?;
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn show_listing(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let listing = listings::resolve(&state, &reference)?;
        if state.node.store().is_blocked(listing.author())? {
            return Err(ApiError::not_found(format!("no current listing {reference:?} (its author is blocked)")));
        }
        Ok(Json(view(&state, &listing, None)))
    })
    .await
}

/// An optional JSON body: empty means every field at its default.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

async fn own(state: &AppState, reference: String) -> Result<Signed<Listing>, ApiError> {
    let st = state.clone();
    blocking(move || listings::resolve_own(&st, &reference)).await
}

async fn publish_revision(state: &AppState, next: Listing) -> Result<Json<Value>, ApiError> {
    let signed = listings::publish(&state.node, next).await?;
    let st = state.clone();
    blocking(move || Ok(Json(view(&st, &signed, None)))).await
}

async fn edit_listing(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    ApiJson(body): ApiJson<ListingEdit>,
) -> Result<Json<Value>, ApiError> {
    let current = own(&state, reference).await?;
    let next = body.apply(current.body(), now())?;
    publish_revision(&state, next).await
}

async fn renew_listing(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let days = optional_json::<Renew>(&body)?.valid_for_days;
    let current = own(&state, reference).await?;
    let next = listings::renewed(current.body(), days, now())?;
    publish_revision(&state, next).await
}

async fn withdraw_listing(
    State(state): State<AppState>,
    ApiPath(reference): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let reason = optional_json::<Withdraw>(&body)?.reason;
    let current = own(&state, reference).await?;
    let w = listings::publish(&state.node, listings::withdrawal(&current, reason)).await?;
    Ok(Json(json!({ "withdrawal": w.id(), "listing": current.id() })))
}

async fn mine(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let filter =
            crate::store::ListingFilter { author: Some(*state.node.identity().public()), ..Default::default() };
        let list = state.node.store().listings(&filter, now())?;
        let shown: Vec<Value> = list.iter().map(|l| view(&state, l, None)).collect();
        Ok(Json(json!({ "listings": shown })))
    })
    .await
}

/// Builds a search query from query-string pairs (`kind` may repeat or hold a comma list).
/// `extra` lists further keys the caller handles itself (they are skipped here).
/// Distances get [`with_distance_defaults`].
pub(crate) fn search_query(
    pairs: &[(String, String)],
    extra: &[&str],
    home: Option<&str>,
) -> Result<SearchQuery, ApiError> {
    let mut q = SearchQuery::default();
    for (k, v) in pairs {
        let v = v.trim();
        match k.as_str() {
            "text" | "q" => q.text = v.to_owned(),
            "kind" => {
                for part in v.split(',').filter(|p| !p.is_empty()) {
                    let kind: Kind = serde_json::from_value(json!(part))
                        .map_err(|_| ApiError::bad_request(format!("unknown kind {part:?}")))?;
                    if !q.kinds.contains(&kind) {
                        q.kinds.push(kind);
                    }
                }
            }
            "category" => {
                q.category = Some(
                    serde_json::from_value(json!(v))
                        .map_err(|_| ApiError::bad_request(format!("unknown category {v:?}")))?,
                )
            }
            "tag" => q.tag = Some(v.to_owned()),
            "community" => q.community = Some(v.to_owned()),
            "author" => {
                q.author =
                    Some(v.parse().map_err(|e| ApiError::bad_request(format!("author {v:?} is not a peer id: {e}")))?)
            }
            "near" => q.near = Some(parse_location(v)?),
            "within_km" => {
                q.within_km =
                    Some(v.parse().map_err(|_| ApiError::bad_request(format!("within_km {v:?} is not a number")))?)
            }
            "sort" => q.sort = Some(v.parse::<Sort>().map_err(|e| ApiError::bad_request(e.to_string()))?),
            "limit" => {
                q.limit = v.parse().map_err(|_| ApiError::bad_request(format!("limit {v:?} is not a number")))?
            }
            "offset" => {
                q.offset = v.parse().map_err(|_| ApiError::bad_request(format!("offset {v:?} is not a number")))?
            }
            other if extra.contains(&other) => {}
            other => return Err(ApiError::bad_request(format!("unknown query parameter {other:?}"))),
        }
    }
    with_distance_defaults(&mut q, home)?;
    q.prepare().map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(q)
}

/// `within_km` or `sort=distance` without `near` measure from the node's own location (`home`);
/// `near` alone sorts nearest first. For searches, event streams and saved searches alike.
pub(crate) fn with_distance_defaults(q: &mut SearchQuery, home: Option<&str>) -> Result<(), ApiError> {
    let wants_distance = q.within_km.is_some() || q.sort == Some(Sort::Distance);
    if q.near.is_none() && wants_distance {
        q.near = Some(home.map(str::to_owned).ok_or_else(|| {
            ApiError::bad_request("within_km and sort=distance need near: this node has no location (troc.toml)")
        })?);
    }
    if q.near.is_some() && q.within_km.is_none() && q.sort.is_none() {
        q.sort = Some(Sort::Distance);
    }
    Ok(())
}

/// Runs a search in the store's index.
pub(crate) fn run_search(state: &AppState, q: &SearchQuery) -> Result<SearchResults, ApiError> {
    state.node.store().search(q, now()).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn search(
    State(state): State<AppState>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let q = search_query(&pairs, &[], state.profile.location.as_deref())?;
    blocking(move || {
        let results = run_search(&state, &q)?;
        let store = state.node.store();
        let mut shown = Vec::with_capacity(results.hits.len());
        for hit in &results.hits {
            // A hit whose listing was replaced in between is skipped: the next search shows the new one.
            if store.is_blocked(&hit.author)? {
                continue;
            }
            let Some(record) = store.get(&hit.id)? else { continue };
            let Ok(listing) = record.downcast::<Listing>() else { continue };
            let mut v = view(&state, &listing, q.near.as_deref());
            v["score"] = json!(hit.score);
            shown.push(v);
        }
        Ok(Json(json!({ "total": results.total, "listings": shown })))
    })
    .await
}

async fn list_alerts(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "alerts": state.local.snapshot().alerts }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAlert {
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) query: SearchQuery,
}

async fn add_alert(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewAlert>,
) -> Result<(StatusCode, Json<Alert>), ApiError> {
    let mut query = body.query;
    with_distance_defaults(&mut query, state.profile.location.as_deref())?;
    query.prepare().map_err(|e| ApiError::bad_request(e.to_string()))?;
    if body.name.chars().count() > MAX_ALERT_NAME {
        return Err(ApiError::bad_request(format!("the name is over {MAX_ALERT_NAME} characters")));
    }
    let mut id = [0u8; 4];
    getrandom::fill(&mut id).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let name = if body.name.is_empty() { query.text.clone() } else { body.name };
    let alert = Alert { id: hex::encode(id), name, query, created_at: now() };
    let local = state.local.clone();
    let saved = alert.clone();
    blocking(move || {
        local
            .update(|s| {
                if s.alerts.len() >= MAX_ALERTS {
                    return Err(LocalError::TooManyAlerts(MAX_ALERTS));
                }
                s.alerts.push(saved);
                Ok(())
            })
            .map_err(|e| match e {
                LocalError::TooManyAlerts(_) => ApiError::conflict(e.to_string()),
                other => ApiError::internal(super::error::chain(&other)),
            })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(alert)))
}

async fn remove_alert(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    let local = state.local.clone();
    let removed = blocking(move || {
        local
            .update(|s| {
                let before = s.alerts.len();
                s.alerts.retain(|a| a.id != id);
                Ok(before != s.alerts.len())
            })
            .map_err(|e| ApiError::internal(super::error::chain(&e)))
    })
    .await?;
    if removed { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("no such alert")) }
}

async fn events(
    State(state): State<AppState>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut types = Vec::new();
    for (k, v) in &pairs {
        if k == "types" {
            for t in v.split(',').filter(|t| !t.is_empty()) {
                let known = TYPES
                    .iter()
                    .find(|k| **k == t.trim())
                    .ok_or_else(|| ApiError::bad_request(format!("unknown event type {t:?}")))?;
                types.push(*known);
            }
        }
    }
    let has_filters = pairs.iter().any(|(k, _)| k != "types");
    let query = search_query(&pairs, &["types"], state.profile.location.as_deref())?;
    let author = query.author;
    let prepared =
        if has_filters { Some(query.prepare().map_err(|e| ApiError::bad_request(e.to_string()))?) } else { None };
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "too many event streams are open")
    })?;
    Ok(stream(&state, StreamFilter { types, query: prepared, author }, permit).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    #[serde(default)]
    identity: bool,
}

async fn export(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let store = state.node.store();
        let me = *state.node.identity().public();
        let mut records: Vec<String> = store
            .by_author(&me, store.quotas().max_records_per_author)?
            .iter()
            .map(|r| hex::encode(r.bytes()))
            .collect();
        // Co-signed records the other party authored belong to this person's history too.
        for r in store.deals_of(&me)? {
            if *r.author() != me {
                records.push(hex::encode(r.bytes()));
            }
        }
        let mut out = json!({
            "format": "troc-backup/1",
            "exported_at": now(),
            "peer_id": me.to_string(),
            "records": records,
        });
        if params.identity {
            out["secret_key"] = json!(hex::encode(*state.node.identity().seed()));
        }
        Ok(Json(out))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportBody {
    pub(crate) records: Vec<String>,
}

/// The records of an import body, as bytes: at most [`MAX_IMPORT_RECORDS`], each in hex.
pub(crate) fn import_items(body: &ImportBody) -> Result<Vec<Vec<u8>>, ApiError> {
    if body.records.len() > MAX_IMPORT_RECORDS {
        return Err(ApiError::bad_request(format!("at most {MAX_IMPORT_RECORDS} records per request")));
    }
    let mut items = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.iter().enumerate() {
        items.push(hex::decode(r).map_err(|_| ApiError::bad_request(format!("record {i} is not hex")))?);
    }
    Ok(items)
}

async fn import(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<Json<ImportReport>, ApiError> {
    let items = import_items(&body)?;
    let results = state.node.ingest_local(items).await?;
    let mut report = ImportReport::default();
    for (index, r) in results.into_iter().enumerate() {
        match r {
            ItemResult::Stored { .. } => report.stored += 1,
            ItemResult::Duplicate { .. } => report.duplicate += 1,
            ItemResult::NotKept { id, reason } => {
                report.not_kept.push(json!({ "index": index, "id": id, "reason": reason }))
            }
            ItemResult::Rejected { code, reason } => {
                report.rejected.push(json!({ "index": index, "code": code, "reason": reason }))
            }
        }
    }
    Ok(Json(report))
}
