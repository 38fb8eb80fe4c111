//! The API's event stream (`GET /v1/events`, Server-Sent Events) and saved-search alerts.
//!
//! One pump task turns the node's events into API events: listing events carry the listing as the
//! API shows it, and every new or edited listing is matched against the saved searches, raising
//! one `alert` event per match. API events go out on a bounded broadcast channel to the open
//! streams; each stream applies its own filters. A stream that reads too slowly loses the oldest
//! events and is told how many (`lagged`), it never slows the node.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use tracing::warn;
use troc_protocol::{Listing, PublicKey, RecordId, RecordType, Signed};

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
    "deal_proposal",
    "deal_agreement",
    "deal_handover",
    "deal_acknowledgement",
    "deal_return",
    "deal_completion",
    "deal_cancellation",
    "deal_extension",
    "deal_extension_requested",
    "deal_review_commitment",
    "deal_review",
    "deal_review_revealed",
    "deal_due_soon",
    "deal_overdue",
    "deal_message_refused",
    "deal_revocation",
    "deal_annulled",
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

/// (alert, listing) pairs already raised that are remembered, so a listing raises an alert once.
const ALERTS_REMEMBERED: usize = 10_000;

/// Which alerts were raised, and the newest listing time seen: what a catch-up after a lag needs.
#[derive(Debug, Default)]
struct AlertMemory {
    raised: HashSet<(String, RecordId)>,
    order: VecDeque<(String, RecordId)>,
    newest: u64,
}

impl AlertMemory {
    /// Records that `alert` fired for `listing`; false if it already had.
    fn raise(&mut self, alert: &str, listing: RecordId) -> bool {
        let key = (alert.to_owned(), listing);
        if !self.raised.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > ALERTS_REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.raised.remove(&old);
        }
        true
    }
}

/// Turns node events into API events until the node stops.
pub(crate) async fn pump(state: AppState) {
    let mut rx = state.node.subscribe();
    let mut seq = 0u64;
    let memory = Arc::new(Mutex::new(AlertMemory::default()));
    loop {
        let made = match rx.recv().await {
            Ok(event) => {
                let (st, mem) = (state.clone(), memory.clone());
                // Store reads are blocking (sled, and verification of what is read).
                tokio::task::spawn_blocking(move || translate(&st, &mem, &event)).await
            }
            Err(RecvError::Lagged(n)) => {
                warn!(missed = n, "the API fell behind the node's events; looking for missed alerts");
                seq += 1;
                let lagged =
                    ApiEvent { seq, kind: "lagged", data: json!({ "missed": n }), listing: None, author: None };
                send(&state, lagged);
                let (st, mem) = (state.clone(), memory.clone());
                tokio::task::spawn_blocking(move || missed_alerts(&st, &mem)).await
            }
            Err(RecvError::Closed) => return,
        };
        let Ok(events) = made else { continue };
        for (kind, data, listing, author) in events {
            seq += 1;
            send(&state, ApiEvent { seq, kind, data, listing, author });
        }
    }
}

fn lock(memory: &Mutex<AlertMemory>) -> std::sync::MutexGuard<'_, AlertMemory> {
    memory.lock().unwrap_or_else(|p| p.into_inner())
}

/// After the node's events were lost, runs every saved search over the listings created since the
/// newest one seen (less the clock skew records are allowed) and raises the alerts that were
/// missed. Listing events themselves are not replayed: the `lagged` event tells the streams.
fn missed_alerts(state: &AppState, memory: &Mutex<AlertMemory>) -> Vec<Made> {
    let since = lock(memory).newest.saturating_sub(troc_protocol::limits::MAX_CLOCK_SKEW_SECS);
    let mut out = Vec::new();
    for alert in state.local.snapshot().alerts {
        let mut q = alert.query.clone();
        q.sort = Some(crate::search::Sort::Newest);
        q.limit = crate::search::MAX_LIMIT;
        q.offset = 0;
        let Ok(results) = super::routes::run_search(state, &q) else { continue };
        for hit in results.hits {
            let Ok(Some(record)) = state.node.store().get(&hit.id) else { continue };
            let Ok(listing) = record.downcast::<Listing>() else { continue };
            if listing.created_at() < since {
                break; // newest first: the rest is older still
            }
            if lock(memory).raise(&alert.id, listing.id()) {
                let shown = view(state, &listing, alert.query.near.as_deref());
                out.push((
                    "alert",
                    json!({ "alert": alert.id, "name": alert.name, "listing": shown }),
                    Some(listing),
                    None,
                ));
            }
        }
    }
    out
}

fn send(state: &AppState, event: ApiEvent) {
    // No receiver is not an error: nobody is watching.
    let _ = state.events.send(Arc::new(event));
}

type Made = (&'static str, Value, Option<Signed<Listing>>, Option<PublicKey>);

/// The API events one node event makes.
fn translate(state: &AppState, memory: &Mutex<AlertMemory>, event: &NodeEvent) -> Vec<Made> {
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
            // A blocked person's listings are hidden from this node's views.
            if state.node.store().is_blocked(listing.author()).unwrap_or(false) {
                return Vec::new();
            }
            let shown = view(state, &listing, None);
            let mut out = Vec::new();
            let (kind, data) = match replaced {
                Some(old) => ("listing_edited", json!({ "listing": shown, "replaced": old })),
                None => ("listing_new", json!({ "listing": shown })),
            };
            out.push((kind, data, Some(listing.clone()), None));
            let now = crate::now_secs();
            {
                let mut m = lock(memory);
                m.newest = m.newest.max(listing.created_at());
            }
            for alert in state.local.snapshot().alerts {
                let Ok(q) = alert.query.prepare() else { continue };
                if q.matches(&listing, now) && lock(memory).raise(&alert.id, listing.id()) {
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
        NodeEvent::SyncProgress { peer, scope, fetched, total } => vec![(
            "sync_progress",
            json!({ "peer_id": peer.to_base58(), "scope": scope, "fetched": fetched, "total": total }),
            None,
            None,
        )],
        NodeEvent::Rejected { peer, code } => {
            vec![("rejected", json!({ "peer_id": peer.to_base58(), "code": code }), None, None)]
        }
        NodeEvent::Deal { kind, deal, peer, record } => {
            if state.node.store().is_blocked(peer).unwrap_or(false) {
                return Vec::new();
            }
            let kind = TYPES.iter().find(|t| *t == kind).copied().unwrap_or("deal_message_refused");
            vec![(kind, json!({ "deal": deal, "peer_id": peer.to_string(), "record": record }), None, None)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_fires_once_per_listing_and_memory_is_bounded() {
        let mut m = AlertMemory::default();
        assert!(m.raise("a", RecordId([1; 32])));
        assert!(!m.raise("a", RecordId([1; 32])));
        assert!(m.raise("b", RecordId([1; 32])));
        for i in 0..ALERTS_REMEMBERED as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[31] = 9;
            m.raise("c", RecordId(id));
        }
        assert_eq!(m.raised.len(), ALERTS_REMEMBERED);
        assert_eq!(m.order.len(), ALERTS_REMEMBERED);
        // The oldest were forgotten.
        assert!(m.raise("a", RecordId([1; 32])));
    }
}
