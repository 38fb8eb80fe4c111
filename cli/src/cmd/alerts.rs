//! Saved searches: `troc alert add|list|remove` (`/v1/alerts`). An alert raises an `alert` event on
//! the node's event stream for every new matching listing (`troc watch --type alert`).

use anyhow::Context;
use serde_json::{Value, json};

use super::Ctx;
use super::listings::filters_json;
use crate::args::AlertCommand;
use crate::client::Api;
use crate::output::{self, clean, str_of, table};

/// The query of an alert in a few words: `"drill" kinds=lend,share near=u09tv` (the text first;
/// paging fields left out).
fn query_words(q: &Value) -> String {
    let Some(obj) = q.as_object() else { return String::new() };
    let mut words = Vec::new();
    if let Some(text) = obj.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        words.push(format!("\"{}\"", clean(text)));
    }
    for (k, v) in obj {
        if matches!(k.as_str(), "text" | "limit" | "offset") || v.is_null() {
            continue;
        }
        let v = match v {
            Value::String(s) => clean(s),
            Value::Array(a) => {
                a.iter().map(|x| x.as_str().map(clean).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(",")
            }
            other => other.to_string(),
        };
        words.push(format!("{k}={v}"));
    }
    words.join(" ")
}

pub async fn run(ctx: &Ctx, cmd: AlertCommand) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    match cmd {
        AlertCommand::Add(args) => {
            let body = json!({ "name": args.name, "query": filters_json(args.text.as_deref(), &args.filters) });
            let v = api.post(&["v1", "alerts"], &body).await.context("could not save the alert")?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                outln!(
                    "Saved alert {} “{}”: {}",
                    str_of(&v, "id"),
                    clean(str_of(&v, "name")),
                    query_words(&v["query"])
                );
                outln!("Matching listings raise `alert` events: troc watch --type alert");
            }
        }
        AlertCommand::List => {
            let v = api.get(&["v1", "alerts"], &Vec::new()).await.context("could not list the alerts")?;
            if ctx.json {
                ctx.print_json(&v);
                return Ok(());
            }
            let alerts = v.get("alerts").and_then(Value::as_array).cloned().unwrap_or_default();
            if alerts.is_empty() {
                outln!("No alerts. Save a search with `troc alert add NAME [TEXT] [filters]`.");
                return Ok(());
            }
            let mut rows = vec![vec!["ID".into(), "NAME".into(), "SINCE".into(), "QUERY".into()]];
            for a in &alerts {
                rows.push(vec![
                    str_of(a, "id").to_owned(),
                    output::cut(str_of(a, "name"), 30),
                    output::u64_of(a, "created_at").map(output::date).unwrap_or_default(),
                    query_words(&a["query"]),
                ]);
            }
            out!("{}", table(&rows));
        }
        AlertCommand::Remove(args) => {
            api.delete(&["v1", "alerts", &args.id])
                .await
                .with_context(|| format!("could not remove alert {}", args.id))?;
            if ctx.json {
                ctx.print_json(&json!({ "removed": args.id }));
            } else {
                outln!("Removed alert {}", args.id);
            }
        }
    }
    Ok(())
}
