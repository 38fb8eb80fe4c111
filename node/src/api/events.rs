//! The API's event stream (`GET /v1/events`, Server-Sent Events) and saved-search alerts.
//!
//! One pump task turns the node's events into API events: listing events carry the listing as the
//! API shows it, and every new or edited listing is matched against the saved searches, raising
//! one `alert` event per match. API events go out on a bounded broadcast channel to the open
//! streams; each stream applies its own filters. A stream that reads too slowly loses the oldest
//! events and is told how many (`lagged`), it never slows the node.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use tracing::warn;
use troc_protocol::{Listing, PublicKey, RecordType, Signed};

use super::AppState;
use super::listings::view;
use crate::events::NodeEvent;
use crate::search::PreparedQuery;

/// API events kept for slow streams.
pub const API_EVENT_CAPACITY: usize = 1024;
/// How often an idle stream gets a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The event types, as `types=` names them.
pub const TYPES: &[&str] = &[
    "listing_new",
    "listing_edited",
    "listing_withdrawn",
    "alert",
    "peer_connected",
    "peer_disconnected",
    "sync_progress",
    "sync_done",
    "rejected",
    "lagged",
];

/// One event of the API's stream.
#[derive(Debug, Clone, Serialize)]
pub struct ApiEvent {
    /// Increasing from 1 for the life of the server (the SSE `id`).
    pub seq: u64,
    #[serde(rename = "event")]
    pub kind: &'static str,
    pub data: Value,
    /// The listing a listing or alert event is about, for the streams' filters.
    #[serde(skip)]
    pub listing: Option<Signed<Listing>>,
    /// The author a withdrawal is about.
    #[serde(skip)]
    pub author: Option<PublicKey>,
}

/// Turns node events into API events until the node stops.
pub(crate) async fn pump(state: AppState) {
    let mut rx = state.node.subscribe();
    let mut seq = 0u64;
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                warn!(missed = n, "the API fell behind the node's events");
                seq += 1;
                send(
                    &state,
                    ApiEvent { seq, kind: "lagged", data: json!({ "missed": n }), listing: None, author: None },
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let st = state.clone();
        // Store reads are blocking (sled, and verification of what is read).
        let made = tokio::task::spawn_blocking(move || translate(&st, &event)).await;
        let Ok(events) = made else { continue };
        for (kind, data, listing, author) in events {
            seq += 1;
            send(&state, ApiEvent { seq, kind, data, listing, author });
        }
    }
}

fn send(state: &AppState, event: ApiEvent) {
    // No receiver is not an error: nobody is watching.
    let _ = state.events.send(Arc::new(event));
}

type Made = (&'static str, Value, Option<Signed<Listing>>, Option<PublicKey>);

/// The API events one node event makes.
fn translate(state: &AppState, event: &NodeEvent) -> Vec<Made> {
    match event {
        NodeEvent::Stored { id, record_type: RecordType::Listing, replaced, .. } => {
            let listing = match state.node.store().get(id) {
                Ok(Some(r)) => match r.downcast::<Listing>() {
                    Ok(l) => l,
                    Err(_) => return Vec::new(),
                },
                // Already superseded or pruned: a later event tells the rest.
                Ok(None) => return Vec::new(),
                Err(e) => {
                    warn!(error = %e, "could not read a stored listing for the event stream");
                    return Vec::new();
                }
            };
            let shown = view(state, &listing, None);
            let mut out = Vec::new();
            let (kind, data) = match replaced {
                Some(old) => ("listing_edited", json!({ "listing": shown, "replaced": old })),
                None => ("listing_new", json!({ "listing": shown })),
            };
            out.push((kind, data, Some(listing.clone()), None));
            let now = crate::now_secs();
            for alert in state.local.snapshot().alerts {
                let Ok(q) = alert.query.prepare() else { continue };
                if q.matches(&listing, now) {
                    let shown = view(state, &listing, alert.query.near.as_deref());
                    out.push((
                        "alert",
                        json!({ "alert": alert.id, "name": alert.name, "listing": shown }),
                        Some(listing.clone()),
                        None,
                    ));
                }
            }
            out
        }
        NodeEvent::Stored { id, record_type: RecordType::Withdrawal, author, replaced, .. } => {
            let Some(listing) = replaced else { return Vec::new() };
            vec![(
                "listing_withdrawn",
                json!({ "listing": listing, "author": author.to_string(), "withdrawal": id }),
                None,
                Some(*author),
            )]
        }
        NodeEvent::PeerConnected { peer } => {
            vec![("peer_connected", json!({ "peer_id": peer.to_base58() }), None, None)]
        }
        NodeEvent::PeerDisconnected { peer } => {
            vec![("peer_disconnected", json!({ "peer_id": peer.to_base58() }), None, None)]
        }
        NodeEvent::SyncDone { peer, scope, fetched, pushed } => vec![(
            "sync_done",
            json!({ "peer_id": peer.to_base58(), "scope": scope, "fetched": fetched, "pushed": pushed }),
            None,
            None,
        )],
        NodeEvent::Rejected { peer, code } => {
            vec![("rejected", json!({ "peer_id": peer.to_base58(), "code": code }), None, None)]
        }
        _ => Vec::new(),
    }
}

/// What one stream wants.
#[derive(Debug)]
pub(crate) struct StreamFilter {
    /// Empty for every type.
    pub types: Vec<&'static str>,
    /// Applies to listing and alert events; `None` passes them all.
    pub query: Option<PreparedQuery>,
    /// The query's author filter, for withdrawals.
    pub author: Option<PublicKey>,
}

impl StreamFilter {
    fn passes(&self, e: &ApiEvent) -> bool {
        if !self.types.is_empty() && e.kind != "lagged" && !self.types.contains(&e.kind) {
            return false;
        }
        match (&e.listing, &self.query) {
            (Some(listing), Some(q)) => q.matches(listing, crate::now_secs()),
            _ => match (e.author, self.author) {
                (Some(a), Some(wanted)) => a == wanted,
                _ => true,
            },
        }
    }
}

/// The SSE response for one stream. `permit` is held for the stream's life.
pub(crate) fn stream(
    state: &AppState,
    filter: StreamFilter,
    permit: OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    struct S {
        rx: broadcast::Receiver<Arc<ApiEvent>>,
        closing: watch::Receiver<bool>,
        filter: StreamFilter,
        _permit: OwnedSemaphorePermit,
    }
    let s = S { rx: state.events.subscribe(), closing: state.closing.clone(), filter, _permit: permit };
    let events = futures::stream::unfold(s, |mut s| async move {
        loop {
            if *s.closing.borrow() {
                return None;
            }
            let next = tokio::select! {
                r = s.rx.recv() => r,
                _ = s.closing.changed() => return None,
            };
            match next {
                Ok(e) if s.filter.passes(&e) => {
                    let data = e.data.to_string();
                    let ev = Event::default().event(e.kind).id(e.seq.to_string()).data(data);
                    return Some((Ok(ev), s));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default().event("lagged").data(json!({ "missed": n }).to_string());
                    return Some((Ok(ev), s));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
