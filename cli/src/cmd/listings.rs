//! Offers, wants and search: `troc offer add`, `troc want add`, `troc listing
//! show|edit|renew|withdraw`, `troc mine`, `troc search`. Each builds the request body of
//! `docs/api.md` from the options given (nothing more, since the API refuses unknown fields) and
//! prints the listing(s) the API answers with.

use anyhow::Context;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::args::{EditArgs, Filters, ListingCommand, ListingFields, Money, SearchArgs, TermArgs};
use crate::client::{Api, Query};
use crate::exit::CliError;
use crate::output::{self, str_of, table};

fn money_json(m: &Money) -> Value {
    json!({ "amount_minor": m.amount_minor, "currency": String::from_utf8_lossy(&m.currency) })
}

/// The terms given on the command line, written over `base` (the listing's current terms, when
/// editing; the API replaces `terms` as a whole).
fn terms_json(t: &TermArgs, base: Option<&Value>) -> Value {
    let mut m: Map<String, Value> = base.and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(d) = t.max_loan_days {
        m.insert("max_loan_days".into(), json!(d));
    }
    if let Some(dep) = &t.deposit {
        m.insert("deposit".into(), money_json(dep));
    }
    for (key, value) in [("conditions", &t.conditions), ("availability", &t.availability), ("in_return", &t.in_return)]
    {
        if let Some(v) = value {
            m.insert(key.into(), json!(v));
        }
    }
    if let Some(h) = t.hours {
        m.insert("hours".into(), json!(h));
    }
    Value::Object(m)
}

/// The body of `POST /v1/listings`.
pub fn new_listing_body(kind: &str, title: &str, f: &ListingFields) -> Value {
    let mut body = json!({ "kind": kind, "category": f.category, "title": title });
    if let Some(d) = &f.description {
        body["description"] = json!(d);
    }
    if !f.tags.is_empty() {
        body["tags"] = json!(f.tags);
    }
    if !f.terms.is_empty() {
        body["terms"] = terms_json(&f.terms, None);
    }
    if let Some(c) = &f.community {
        body["community"] = json!(c);
    }
    if let Some(l) = &f.location {
        body["location"] = json!(l);
    }
    if let Some(t) = f.available_from {
        body["available_from"] = json!(t);
    }
    if let Some(t) = f.available_until {
        body["available_until"] = json!(t);
    }
    if let Some(d) = f.valid_for_days {
        body["valid_for_days"] = json!(d);
    }
    body
}

fn print_listing_result(ctx: &Ctx, verb: &str, listing: &Value) {
    if ctx.json {
        ctx.print_json(listing);
        return;
    }
    let until = output::u64_of(listing, "valid_until")
        .map(|u| format!(", valid until {}", output::date(u)))
        .unwrap_or_default();
    outln!(
        "{verb} {} {} “{}” in {}{until}",
        str_of(listing, "kind"),
        output::short_id(str_of(listing, "id")),
        output::clean(str_of(listing, "title")),
        output::clean(str_of(listing, "community")),
    );
    outln!("id: {}", str_of(listing, "id"));
}

pub async fn add(ctx: &Ctx, kind: &str, title: &str, fields: &ListingFields) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let body = new_listing_body(kind, title, fields);
    let what = if kind == "want" { "want" } else { "offer" };
    let listing =
        api.post(&["v1", "listings"], &body).await.with_context(|| format!("could not publish the {what}"))?;
    print_listing_result(ctx, "Published", &listing);
    Ok(())
}

/// The body of `PATCH /v1/listings/{listing}`; `current` is the listing's current revision (needed
/// only when terms change). Fails if nothing would change.
fn edit_body(args: &EditArgs, current: Option<&Value>) -> anyhow::Result<Value> {
    let mut body = Map::new();
    let mut set = |k: &str, v: Value| {
        body.insert(k.to_owned(), v);
    };
    if let Some(t) = &args.title {
        set("title", json!(t));
    }
    if let Some(d) = &args.description {
        set("description", json!(d));
    }
    if let Some(c) = &args.category {
        set("category", json!(c));
    }
    if !args.tags.is_empty() {
        set("tags", json!(args.tags));
    }
    if args.no_tags {
        set("tags", json!([]));
    }
    if !args.terms.is_empty() {
        set("terms", terms_json(&args.terms, current.and_then(|c| c.get("terms"))));
    }
    if let Some(c) = &args.community {
        set("community", json!(c));
    }
    if let Some(l) = &args.location {
        set("location", json!(l));
    }
    if let Some(t) = args.available_from {
        set("available_from", json!(t));
    }
    if let Some(t) = args.available_until {
        set("available_until", json!(t));
    }
    if let Some(d) = args.valid_for_days {
        set("valid_for_days", json!(d));
    }
    if body.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give at least one field (see `troc listing edit --help`)".into(),
        )
        .into());
    }
    Ok(Value::Object(body))
}

pub async fn listing(ctx: &Ctx, cmd: ListingCommand) -> anyhow::Result<()> {
    match cmd {
        ListingCommand::Show(r) => {
            let api = Api::open(&ctx.home)?;
            let l = api
                .get(&["v1", "listings", &r.listing], &Vec::new())
                .await
                .with_context(|| format!("could not show listing {}", r.listing))?;
            if ctx.json {
                ctx.print_json(&l);
            } else {
                out!("{}", output::listing_detail(&l, troc_node::now_secs()));
            }
        }
        ListingCommand::Edit(args) => {
            // Checked before anything is sent, so "nothing to change" is a usage error either way.
            edit_body(&args, None)?;
            let api = Api::open(&ctx.home)?;
            let target = &args.target.listing;
            let current = if args.terms.is_empty() {
                None
            } else {
                Some(
                    api.get(&["v1", "listings", target], &Vec::new())
                        .await
                        .with_context(|| format!("could not read listing {target}"))?,
                )
            };
            let body = edit_body(&args, current.as_ref())?;
            let l = api
                .patch(&["v1", "listings", target], &body)
                .await
                .with_context(|| format!("could not edit listing {target}"))?;
            print_listing_result(ctx, "Edited", &l);
        }
        ListingCommand::Renew(args) => {
            let api = Api::open(&ctx.home)?;
            let target = &args.target.listing;
            let body = match args.valid_for_days {
                Some(d) => json!({ "valid_for_days": d }),
                None => json!({}),
            };
            let l = api
                .post(&["v1", "listings", target, "renew"], &body)
                .await
                .with_context(|| format!("could not renew listing {target}"))?;
            print_listing_result(ctx, "Renewed", &l);
        }
        ListingCommand::Withdraw(args) => {
            let api = Api::open(&ctx.home)?;
            let target = &args.target.listing;
            let body = match &args.reason {
                Some(r) => json!({ "reason": r }),
                None => json!({}),
            };
            let v = api
                .post(&["v1", "listings", target, "withdraw"], &body)
                .await
                .with_context(|| format!("could not withdraw listing {target}"))?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                outln!(
                    "Withdrew listing {} (withdrawal {})",
                    str_of(&v, "listing"),
                    output::short_id(str_of(&v, "withdrawal"))
                );
            }
        }
    }
    Ok(())
}

fn print_listings(listings: &[Value]) {
    let now = troc_node::now_secs();
    out!("{}", table(&output::listing_rows(listings, now)));
}

pub async fn mine(ctx: &Ctx) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api.get(&["v1", "mine"], &Vec::new()).await.context("could not list your listings")?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let listings = v.get("listings").and_then(Value::as_array).cloned().unwrap_or_default();
    if listings.is_empty() {
        outln!("You have no current listings. Publish one with `troc offer add` or `troc want add`.");
    } else {
        print_listings(&listings);
    }
    Ok(())
}

/// The shared filters as `(name, value)` pairs, named as `/v1/search` names them. Distances need no
/// default here: the node measures from its own location when `near` is missing.
fn filter_pairs(text: Option<&str>, f: &Filters) -> Vec<(&'static str, Value)> {
    let mut pairs = Vec::new();
    if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
        pairs.push(("text", json!(t)));
    }
    if !f.kinds.is_empty() {
        pairs.push(("kind", json!(f.kinds)));
    }
    let singles = [
        ("category", &f.category),
        ("tag", &f.tag),
        ("community", &f.community),
        ("author", &f.author),
        ("near", &f.near),
    ];
    for (k, v) in singles {
        if let Some(v) = v {
            pairs.push((k, json!(v)));
        }
    }
    if let Some(km) = f.within {
        pairs.push(("within_km", json!(km)));
    }
    pairs
}

/// The query parameters of the shared filters (`/v1/search`, `/v1/events`).
pub fn filters_query(text: Option<&str>, f: &Filters) -> Query {
    filter_pairs(text, f)
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

/// The shared filters as an alert's JSON query (`POST /v1/alerts`), where the kinds are a list
/// named `kinds`.
pub fn filters_json(text: Option<&str>, f: &Filters) -> Value {
    let q: Map<String, Value> =
        filter_pairs(text, f).into_iter().map(|(k, v)| (if k == "kind" { "kinds" } else { k }.to_owned(), v)).collect();
    Value::Object(q)
}

pub async fn search(ctx: &Ctx, args: &SearchArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let mut q = filters_query(args.text.as_deref(), &args.filters);
    if let Some(s) = args.sort {
        q.push(("sort", s.as_str().to_owned()));
    }
    if let Some(n) = args.limit {
        q.push(("limit", n.to_string()));
    }
    if let Some(o) = args.offset {
        q.push(("offset", o.to_string()));
    }
    let v = api.get(&["v1", "search"], &q).await.context("could not search")?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let listings = v.get("listings").and_then(Value::as_array).cloned().unwrap_or_default();
    let total = output::u64_of(&v, "total").unwrap_or(listings.len() as u64);
    if listings.is_empty() {
        outln!("No listings found.");
        return Ok(());
    }
    print_listings(&listings);
    if total > listings.len() as u64 {
        let offset = u64::from(args.offset.unwrap_or(0));
        outln!(
            "({} to {} of {total}; --offset {} for more)",
            offset + 1,
            offset + listings.len() as u64,
            offset + listings.len() as u64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command, OfferCommand};
    use clap::Parser;

    fn offer(args: &[&str]) -> Value {
        let cli = Cli::try_parse_from([&["troc", "offer", "add"][..], args].concat()).unwrap();
        let Command::Offer(OfferCommand::Add(a)) = cli.command else { panic!("not offer add") };
        new_listing_body(&a.kind, &a.title, &a.fields)
    }

    #[test]
    fn bodies_hold_only_what_was_given() {
        assert_eq!(
            offer(&["give", "Seedlings", "-c", "garden"]),
            json!({"kind": "give", "category": "garden", "title": "Seedlings"})
        );
        let body = offer(&[
            "lend",
            "Drill",
            "-c",
            "tools",
            "--tag",
            "drill,diy",
            "--max-loan-days",
            "7",
            "--deposit",
            "20 EUR",
            "--location",
            "51.52,-0.098",
            "--valid-for-days",
            "14",
        ]);
        assert_eq!(body["tags"], json!(["drill", "diy"]));
        assert_eq!(body["terms"], json!({"max_loan_days": 7, "deposit": {"amount_minor": 2000, "currency": "EUR"}}));
        assert_eq!(body["location"].as_str().unwrap().len(), 5);
        assert_eq!(body["valid_for_days"], 14);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["want", "X", "-c", "tools"][..],
            &["lend", "X", "-c", "toolz"],
            &["lend", "X", "-c", "tools", "--community", "North End"],
            &["lend", "X", "-c", "tools", "--location", "u09a"],
            &["lend", "X", "-c", "tools", "--valid-for-days", "91"],
            &["lend", "X"],
        ] {
            let err = Cli::try_parse_from([&["troc", "offer", "add"][..], bad].concat()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn edits_merge_terms_and_refuse_nothing() {
        let cli = Cli::try_parse_from(["troc", "listing", "edit", "abcdef", "--deposit", "5 EUR"]).unwrap();
        let Command::Listing(ListingCommand::Edit(args)) = cli.command else { panic!() };
        let current = json!({"terms": {"max_loan_days": 3}});
        let body = edit_body(&args, Some(&current)).unwrap();
        assert_eq!(body, json!({"terms": {"max_loan_days": 3, "deposit": {"amount_minor": 500, "currency": "EUR"}}}));
        let cli = Cli::try_parse_from(["troc", "listing", "edit", "abcdef"]).unwrap();
        let Command::Listing(ListingCommand::Edit(args)) = cli.command else { panic!() };
        assert!(edit_body(&args, None).is_err());
    }

    #[test]
    fn filters() {
        let cli = Cli::try_parse_from([
            "troc",
            "search",
            "drill",
            "--kind",
            "lend,share",
            "--near",
            "u09tvw",
            "--within",
            "2.5",
            "--sort",
            "distance",
        ])
        .unwrap();
        let Command::Search(s) = cli.command else { panic!() };
        let q = filters_query(s.text.as_deref(), &s.filters);
        assert_eq!(
            q,
            vec![
                ("text", "drill".to_owned()),
                ("kind", "lend,share".to_owned()),
                ("near", "u09tv".to_owned()),
                ("within_km", "2.5".to_owned())
            ]
        );
        assert_eq!(
            filters_json(s.text.as_deref(), &s.filters),
            json!({"text": "drill", "kinds": ["lend", "share"], "near": "u09tv", "within_km": 2.5})
        );
    }
}
