//! `troc watch`: the node's event stream (`GET /v1/events`, Server-Sent Events) as NDJSON on
//! stdout, one object per event: the event's `data` plus `"event": <type>`. Exits 0 when the stream
//! ends (the node shut down) or stdout is closed (`troc watch | head -1`), 3 if the node is not
//! running.

use std::io::Write;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Map, Value};

use super::Ctx;
use super::listings::filters_query;
use crate::args::WatchArgs;
use crate::client::Api;
use crate::output::{self, clean, str_of};
use crate::sse::{SseMessage, SseParser};

/// The NDJSON object of one message: its data (an object) with `"event"` added; data that is not
/// an object is kept under `"data"`.
pub fn ndjson(msg: &SseMessage) -> Value {
    let mut obj = match serde_json::from_str::<Value>(&msg.data) {
        Ok(Value::Object(m)) => m,
        Ok(other) => Map::from_iter([("data".to_owned(), other)]),
        Err(_) => Map::from_iter([("data".to_owned(), Value::String(msg.data.clone()))]),
    };
    obj.insert("event".to_owned(), Value::String(msg.event.clone()));
    Value::Object(obj)
}

/// One readable line for an event (`--human`).
pub fn human_line(event: &Value, now: u64) -> String {
    let kind = str_of(event, "event");
    let peer = || clean(str_of(event, "peer_id"));
    match kind {
        "listing_new" => format!("new      {}", output::listing_line(&event["listing"], now)),
        "listing_edited" => format!("edited   {}", output::listing_line(&event["listing"], now)),
        "listing_withdrawn" => {
            format!("withdrawn {} by {}", output::short_id(str_of(event, "listing")), clean(str_of(event, "author")))
        }
        "alert" => {
            format!("alert “{}”: {}", clean(str_of(event, "name")), output::listing_line(&event["listing"], now))
        }
        "peer_connected" => format!("connected to {}", peer()),
        "peer_disconnected" => format!("disconnected from {}", peer()),
        "sync_progress" => format!(
            "catching up {} with {}: {} of {}",
            clean(str_of(event, "scope")),
            peer(),
            output::u64_of(event, "fetched").unwrap_or(0),
            output::u64_of(event, "total").unwrap_or(0)
        ),
        "sync_done" => format!(
            "caught up {} with {}: {} fetched, {} sent",
            clean(str_of(event, "scope")),
            peer(),
            output::u64_of(event, "fetched").unwrap_or(0),
            output::u64_of(event, "pushed").unwrap_or(0)
        ),
        "rejected" => format!("refused a record from {}: {}", peer(), clean(str_of(event, "code"))),
        "lagged" => format!("missed {} events (reading too slowly)", output::u64_of(event, "missed").unwrap_or(0)),
        deal if deal.starts_with("deal_") => format!(
            "{:<24} deal {} with {}",
            deal.trim_start_matches("deal_").replace('_', " "),
            output::short_id(str_of(event, "deal")),
            peer()
        ),
        other => {
            let mut rest = event.clone();
            if let Some(m) = rest.as_object_mut() {
                m.remove("event");
            }
            format!("{} {rest}", clean(other))
        }
    }
}

pub async fn run(ctx: &Ctx, args: &WatchArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let mut q = filters_query(args.text.as_deref(), &args.filters);
    if !args.types.is_empty() {
        let types: Vec<&str> = args.types.iter().map(|t| t.as_str()).collect();
        q.insert(0, ("types", types.join(",")));
    }
    let resp = api.events(&q).await.context("could not open the event stream")?;
    let human = args.human && !ctx.json;
    let mut stream = resp.bytes_stream();
    let mut parser = SseParser::new();
    while let Some(chunk) = stream.next().await {
        let bytes = match chunk {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                return Err(anyhow::Error::new(e).context("the node stopped sending events (not even keep-alives)"));
            }
            Err(e) => {
                // The node went away without ending the stream cleanly (it was stopped).
                tracing::debug!(error = %e, "the event stream broke");
                break;
            }
        };
        for msg in parser.push(&bytes)? {
            let event = ndjson(&msg);
            let line = if human { human_line(&event, troc_node::now_secs()) } else { event.to_string() };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(()); // stdout closed: the reader has what it wanted
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_become_one_object_each() {
        let msg = SseMessage {
            event: "peer_connected".into(),
            data: "{\"peer_id\":\"12D3KooWx\"}".into(),
            id: Some("3".into()),
        };
        assert_eq!(ndjson(&msg), json!({"event": "peer_connected", "peer_id": "12D3KooWx"}));
        let msg = SseMessage { event: "odd".into(), data: "not json".into(), id: None };
        assert_eq!(ndjson(&msg), json!({"event": "odd", "data": "not json"}));
        assert_eq!(
            human_line(&ndjson(&SseMessage { event: "lagged".into(), data: "{\"missed\":4}".into(), id: None }), 0),
            "missed 4 events (reading too slowly)"
        );
    }
}
