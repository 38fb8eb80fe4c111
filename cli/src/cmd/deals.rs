//! Deals: `troc deal propose|accept|decline|counter|handover|return|complete|cancel|extend|list|show`,
//! `troc review`, `troc inbox`, `troc block|unblock` (`/v1/deals`, `/v1/inbox`, `/v1/blocked`).
//! Each prints the API's JSON with `--json`, a few readable lines otherwise.

use anyhow::Context;
use serde_json::{Value, json};

use super::Ctx;
use crate::args::{BlockArgs, DealCommand, PersonArg, ReviewArgs};
use crate::client::Api;
use crate::output::{self, clean, short_id, str_of, table};

const DAY: u64 = 24 * 3600;

fn note(n: &Option<String>) -> Value {
    json!({ "note": n.clone().unwrap_or_default() })
}

/// A deal in one line: id, kind, status, whose move.
fn deal_line(d: &Value, me: &str) -> Vec<String> {
    let other = if str_of(d, "proposer") == me { str_of(d, "receiver") } else { str_of(d, "proposer") };
    let next = match (d.get("waiting_for").and_then(Value::as_str), d.get("next_step").and_then(Value::as_str)) {
        (Some(w), Some(s)) if w == me => format!("you: {s}"),
        (Some(_), Some(s)) => format!("them: {s}"),
        (None, Some(s)) => format!("either: {s}"),
        _ => String::new(),
    };
    let due = output::u64_of(d, "due").map(output::date).unwrap_or_default();
    vec![
        short_id(str_of(d, "id")),
        str_of(d, "kind").to_owned(),
        str_of(d, "status").to_owned(),
        output::cut(&clean(other), 16),
        due,
        next,
    ]
}

async fn me(api: &Api) -> anyhow::Result<String> {
    let v = api.get(&["v1", "status"], &Vec::new()).await.context("could not ask the node who it is")?;
    Ok(v.get("peer_id").and_then(Value::as_str).unwrap_or_default().to_owned())
}

fn print(ctx: &Ctx, v: &Value, human: impl FnOnce(&Value)) {
    if ctx.json {
        ctx.print_json(v);
    } else {
        human(v);
    }
}

fn recorded(what: &str) -> impl FnOnce(&Value) + '_ {
    move |v: &Value| {
        let id = v.pointer("/record/id").and_then(Value::as_str).unwrap_or_default();
        outln!("{what}: record {}", short_id(id));
    }
}

pub async fn deal(ctx: &Ctx, cmd: DealCommand) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    match cmd {
        DealCommand::Propose(a) => {
            let now = troc_node::now_secs();
            let start = now + u64::from(a.in_days.unwrap_or(0)) * DAY;
            let mut body = json!({
                "listing": a.listing.listing,
                "start": start,
                "message": a.message,
                "in_return": a.in_return,
            });
            if let Some(d) = a.days {
                body["days"] = json!(d);
            }
            let v = api.post(&["v1", "deals"], &body).await.context("could not propose the deal")?;
            print(ctx, &v, |v| {
                outln!(
                    "Proposed deal {} ({}); it reaches the listing's author directly, now or when they are online.",
                    short_id(str_of(v, "proposal")),
                    str_of(&v["deal"], "kind")
                );
            });
        }
        DealCommand::Accept(r) => {
            let v = api.post(&["v1", "deals", &r.deal, "accept"], &json!({})).await.context("could not accept")?;
            print(ctx, &v, |v| {
                if v.get("agreed").and_then(Value::as_bool) == Some(true) {
                    outln!("Agreed: agreement {} signed by both of you.", short_id(str_of(v, "agreement")));
                } else {
                    outln!(
                        "Accepted: agreement {} sent; it is complete once the proposer's node countersigns it.",
                        short_id(str_of(v, "agreement"))
                    );
                }
            });
        }
        DealCommand::Decline(a) => {
            let action = if a.withdraw { "withdraw" } else { "decline" };
            let v = api
                .post(&["v1", "deals", &a.target.deal, action], &note(&a.note))
                .await
                .with_context(|| format!("could not {action} the proposal"))?;
            print(ctx, &v, |_| outln!("{}", if a.withdraw { "Withdrawn." } else { "Declined." }));
        }
        DealCommand::Counter(a) => {
            let mut body = json!({});
            if let Some(d) = a.days {
                body["days"] = json!(d);
            }
            if let Some(m) = a.message {
                body["message"] = json!(m);
            }
            if let Some(r) = a.in_return {
                body["in_return"] = json!(r);
            }
            let v = api.post(&["v1", "deals", &a.target.deal, "counter"], &body).await.context("could not counter")?;
            print(ctx, &v, |v| outln!("Countered with proposal {}.", short_id(str_of(v, "proposal"))));
        }
        DealCommand::Handover(a) | DealCommand::Return(a) if a.ack => {
            let body = json!({ "condition": a.condition, "note": a.note.clone().unwrap_or_default() });
            let v = api
                .post(&["v1", "deals", &a.target.deal, "acknowledge"], &body)
                .await
                .context("could not acknowledge")?;
            print(ctx, &v, recorded("Acknowledged"));
        }
        DealCommand::Handover(a) => {
            let v = api
                .post(&["v1", "deals", &a.target.deal, "handover"], &note(&a.note))
                .await
                .context("could not sign the handover")?;
            print(ctx, &v, recorded("Handed over"));
        }
        DealCommand::Return(a) => {
            let v = api
                .post(&["v1", "deals", &a.target.deal, "return"], &note(&a.note))
                .await
                .context("could not sign the return")?;
            print(ctx, &v, recorded("Returned"));
        }
        DealCommand::Complete(a) => {
            let v = api
                .post(&["v1", "deals", &a.target.deal, "complete"], &note(&a.note))
                .await
                .context("could not complete the deal")?;
            print(ctx, &v, recorded("Completed"));
        }
        DealCommand::Cancel(a) => {
            let body = json!({ "reason": a.reason, "note": a.note.clone().unwrap_or_default() });
            let v = api.post(&["v1", "deals", &a.target.deal, "cancel"], &body).await.context("could not cancel")?;
            print(ctx, &v, recorded("Cancelled"));
        }
        DealCommand::Extend(a) => match (a.accept, a.deal, a.days) {
            (None, _, _) if a.decline.is_some() => {
                let req = a.decline.unwrap_or_default();
                api.post(&["v1", "extensions", &req, "decline"], &json!({}))
                    .await
                    .context("could not decline the extension")?;
                let v = json!({ "declined": req });
                print(ctx, &v, |_| outln!("Extension request {} declined; the due date stays.", short_id(&req)));
            }
            (Some(req), _, _) => {
                let v = api
                    .post(&["v1", "extensions", &req, "accept"], &json!({}))
                    .await
                    .context("could not accept the extension")?;
                print(ctx, &v, recorded("Extension accepted"));
            }
            (None, Some(deal), Some(days)) => {
                let v = api
                    .post(&["v1", "deals", &deal, "extend"], &json!({ "days": days }))
                    .await
                    .context("could not ask for an extension")?;
                print(ctx, &v, |v| {
                    let due = output::u64_of(v, "new_due").map(output::date).unwrap_or_default();
                    outln!("Asked to extend to {due}; the other party accepts it explicitly.");
                });
            }
            _ => {
                return Err(crate::exit::CliError::Usage(
                    "give a deal and --days, --accept REQUEST or --decline REQUEST".into(),
                )
                .into());
            }
        },
        DealCommand::List => {
            let v = api.get(&["v1", "deals"], &Vec::new()).await.context("could not list the deals")?;
            if ctx.json {
                ctx.print_json(&v);
                return Ok(());
            }
            let deals = v.get("deals").and_then(Value::as_array).cloned().unwrap_or_default();
            if deals.is_empty() {
                outln!("No deals yet. Propose one with `troc deal propose LISTING`.");
                return Ok(());
            }
            let me = me(&api).await?;
            let mut rows = vec![["DEAL", "KIND", "STATUS", "WITH", "DUE", "NEXT"].map(String::from).to_vec()];
            rows.extend(deals.iter().map(|d| deal_line(d, &me)));
            out!("{}", table(&rows));
        }
        DealCommand::Show(r) => {
            let v = api.get(&["v1", "deals", &r.deal], &Vec::new()).await.context("could not show the deal")?;
            if ctx.json {
                ctx.print_json(&v);
                return Ok(());
            }
            let me = me(&api).await?;
            let line = deal_line(&v, &me);
            outln!("Deal {} ({}): {}", str_of(&v, "id"), line[1], line[2]);
            outln!("With {}", line[3]);
            if !line[4].is_empty() {
                outln!("Due {}", line[4]);
            }
            if !line[5].is_empty() {
                outln!("Next: {}", line[5]);
            }
            for rec in v.get("records").and_then(Value::as_array).into_iter().flatten() {
                let at = output::u64_of(rec, "created_at").map(output::date_time).unwrap_or_default();
                outln!("  {at}  {:<18} {}", str_of(rec, "type"), short_id(str_of(rec, "id")));
            }
            for rv in v.get("reviews").and_then(Value::as_array).into_iter().flatten() {
                let what = match rv.get("rating").and_then(Value::as_str) {
                    Some(r) => format!("{r}: {}", clean(str_of(rv, "text"))),
                    None if str_of(rv, "state") == "revoked" => "(revoked by its author)".into(),
                    None => "(hidden until both have reviewed, or the window closes)".into(),
                };
                outln!("  review by {}: {what}", output::cut(str_of(rv, "author"), 16));
            }
            for who in v.get("agreement_revoked_by").and_then(Value::as_array).into_iter().flatten() {
                let who = who.as_str().unwrap_or_default();
                let by = if who == me { "you".to_owned() } else { output::cut(who, 16) };
                outln!("  agreement revoked by {by} (annulled only once both parties revoke it)");
            }
            for rv in v.get("revocations").and_then(Value::as_array).into_iter().flatten() {
                if str_of(rv, "target_type") == "agreement" {
                    continue;
                }
                outln!(
                    "  {} {} revoked by {}: {}",
                    str_of(rv, "target_type"),
                    short_id(str_of(rv, "target")),
                    output::cut(str_of(rv, "author"), 16),
                    str_of(rv, "effect").replace('_', " ")
                );
            }
        }
    }
    Ok(())
}

pub async fn review(ctx: &Ctx, a: &ReviewArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api
        .post(&["v1", "deals", &a.target.deal, "review"], &json!({ "rating": a.rating, "text": a.text }))
        .await
        .context("could not review the deal")?;
    print(ctx, &v, |_| outln!("Reviewed (hidden until the other party reviews too, or 14 days after the deal)."));
    Ok(())
}

pub async fn inbox(ctx: &Ctx) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api.get(&["v1", "inbox"], &Vec::new()).await.context("could not read the inbox")?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let items = v.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        outln!("Nothing waits for you.");
        return Ok(());
    }
    let mut rows = vec![["WHAT", "DEAL", "WITH", "STATUS", "DUE", "RECORD"].map(String::from).to_vec()];
    for i in &items {
        rows.push(vec![
            str_of(i, "kind").to_owned(),
            short_id(str_of(i, "deal")),
            output::cut(str_of(i, "peer"), 16),
            str_of(i, "status").to_owned(),
            output::u64_of(i, "due").map(output::date).unwrap_or_default(),
            i.get("record").and_then(Value::as_str).map(short_id).unwrap_or_default(),
        ]);
    }
    out!("{}", table(&rows));
    Ok(())
}

pub async fn block(ctx: &Ctx, a: &BlockArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    if a.list {
        let v = api.get(&["v1", "blocked"], &Vec::new()).await.context("could not list blocked people")?;
        print(ctx, &v, |v| {
            let list = v.get("blocked").and_then(Value::as_array).cloned().unwrap_or_default();
            if list.is_empty() {
                outln!("Nobody is blocked.");
            }
            for p in list {
                outln!("{}", p.as_str().unwrap_or_default());
            }
        });
        return Ok(());
    }
    let person = a.person.clone().unwrap_or_default();
    let v = api.post(&["v1", "blocked"], &json!({ "person": person })).await.context("could not block")?;
    print(ctx, &v, |_| outln!("Blocked {person} on this node (nothing is hidden from anyone else)."));
    Ok(())
}

pub async fn unblock(ctx: &Ctx, a: &PersonArg) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api.delete_json(&["v1", "blocked", &a.person]).await.context("could not unblock")?;
    print(ctx, &v, |_| outln!("Unblocked {}.", a.person));
    Ok(())
}
