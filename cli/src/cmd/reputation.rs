//! Reputation: `troc rep PEER [--explain]`, `troc rep --top N`, `troc vouch PEER --context ...`,
//! `troc vouch list`, `troc revoke RECORD_ID` (`/v1/reputation`, `/v1/vouches`,
//! `/v1/records/{id}/revoke`). Human output shows the evidence behind a standing, not only a number;
//! `--json` prints the API's JSON.

use anyhow::Context;
use serde_json::{Value, json};

use super::Ctx;
use crate::args::{RepArgs, RevokeArgs, VouchArgs, VouchCommand};
use crate::client::Api;
use crate::exit::CliError;
use crate::output::{self, clean, cut, short_id, str_of, table};

/// "Alice (AbCdEfGh)", or the short id alone, of a JSON object with `name` and `short`.
fn who(v: &Value) -> String {
    let short = str_of(v, "short");
    match clean(str_of(v, "name")).trim() {
        "" => short.to_owned(),
        name => format!("{} ({short})", cut(name, 24)),
    }
}

/// What a standing means, in words.
fn standing_words(standing: &str) -> &'static str {
    match standing {
        "viewer" => "this is you",
        "blocked" => "you blocked this person: their records are hidden here and left out of the computation",
        "unknown" => "not enough evidence: no completed deal with anyone you trust",
        "probation" => "has completed deals with people you trust, not established yet",
        "established" => "established: enough established counterparties, for long enough",
        _ => "",
    }
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// One person's reputation, for people.
fn print_person(v: &Value) {
    let standing = str_of(v, "standing");
    outln!("{}  {}", who(v), str_of(v, "peer_id"));
    outln!("Standing: {standing} ({})", standing_words(standing));
    if standing == "viewer" {
        return;
    }
    let e = v.get("evidence").unwrap_or(&Value::Null);
    let deals = n(e, "deals_completed");
    let cps = n(e, "counterparties");
    outln!(
        "Deals completed: {} with {}, {} of them you trust",
        deals,
        plural(cps, "counterparty", "counterparties"),
        n(e, "trusted_counterparties")
    );
    outln!("Opinions received: {} positive, {} negative", n(e, "positives"), n(e, "negatives"));
    outln!("Vouches received: {}", n(e, "vouches_received"));
    if let Some(since) = output::u64_of(e, "established_since") {
        outln!("Established since: {}", output::date(since));
    }
    match (v.get("rank").and_then(Value::as_u64), v.get("score").and_then(Value::as_f64)) {
        (Some(rank), Some(score)) => {
            outln!("Rank: {rank} in your view (score {score:.4}; comparable within one view only)")
        }
        _ => outln!("Rank: none (no trust reaches them from you)"),
    }
    let view = v.get("view").unwrap_or(&Value::Null);
    if let Some(at) = output::u64_of(view, "computed_at") {
        let pending = n(view, "pending");
        let pending =
            if pending > 0 { format!("; {pending} newer records count at the next update") } else { String::new() };
        outln!("Computed {} over {} people{pending}", output::date_time(at), n(view, "identities"));
    }
}

/// The paths of trust, hop by hop, with names and the deals behind each edge.
fn print_explanation(v: &Value, me: &str) {
    let Some(e) = v.get("explanation") else { return };
    let people = e.get("people").unwrap_or(&Value::Null);
    let name = |id: &str| -> String {
        if id == me {
            return "you".to_owned();
        }
        people.get(id).map(who).unwrap_or_else(|| id.chars().take(16).collect())
    };
    let paths = e.get("paths").and_then(Value::as_array).cloned().unwrap_or_default();
    outln!();
    if paths.is_empty() {
        outln!("No path of trust leads from you to them (at most 4 hops).");
        return;
    }
    outln!("Why: the strongest paths of trust from you");
    for (i, p) in paths.iter().enumerate() {
        let strength = p.get("strength").and_then(Value::as_f64).unwrap_or(0.0);
        outln!("  {}. strength {strength:.4}", i + 1);
        for h in p.get("hops").and_then(Value::as_array).into_iter().flatten() {
            let deals = n(h, "deals");
            let mut why = Vec::new();
            if deals > 0 {
                why.push(plural(deals, "deal", "deals"));
            }
            if h.get("vouched").and_then(Value::as_bool) == Some(true) {
                why.push("a vouch".to_owned());
            }
            outln!(
                "     {} -> {}: weight {:.3}, {}",
                name(str_of(h, "from")),
                name(str_of(h, "to")),
                h.get("weight").and_then(Value::as_f64).unwrap_or(0.0),
                if why.is_empty() { "no evidence listed".to_owned() } else { why.join(" and ") }
            );
        }
    }
}

pub async fn rep(ctx: &Ctx, a: &RepArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    if let Some(top) = a.top {
        let v = api
            .get(&["v1", "reputation"], &vec![("limit", top.to_string())])
            .await
            .context("could not read the reputation ranking")?;
        if ctx.json {
            ctx.print_json(&v);
            return Ok(());
        }
        let people = v.get("people").and_then(Value::as_array).cloned().unwrap_or_default();
        if people.is_empty() {
            outln!("Nobody has a score in your view yet: it grows with your deals and your vouches.");
            return Ok(());
        }
        let mut rows = vec![
            ["RANK", "PERSON", "STANDING", "DEALS", "COUNTERPARTIES", "YOU TRUST", "NEGATIVE", "VOUCHES"]
                .map(String::from)
                .to_vec(),
        ];
        for p in &people {
            let e = p.get("evidence").unwrap_or(&Value::Null);
            rows.push(vec![
                p.get("rank").and_then(Value::as_u64).map(|r| r.to_string()).unwrap_or_default(),
                who(p),
                str_of(p, "standing").to_owned(),
                n(e, "deals_completed").to_string(),
                n(e, "counterparties").to_string(),
                n(e, "trusted_counterparties").to_string(),
                n(e, "negatives").to_string(),
                n(e, "vouches_received").to_string(),
            ]);
        }
        out!("{}", table(&rows));
        return Ok(());
    }
    let person = a.person.clone().ok_or_else(|| CliError::Usage("give a person, or --top N".into()))?;
    let query = if a.explain { vec![("explain", "true".to_owned())] } else { Vec::new() };
    let v = api
        .get(&["v1", "reputation", &person], &query)
        .await
        .with_context(|| format!("could not read the reputation of {person}"))?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    print_person(&v);
    if a.explain {
        let me = api.get(&["v1", "status"], &Vec::new()).await.context("could not ask the node who it is")?;
        print_explanation(&v, str_of(&me, "peer_id"));
    }
    Ok(())
}

pub async fn vouch(ctx: &Ctx, a: &VouchArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    if let Some(VouchCommand::List) = a.command {
        let v = api.get(&["v1", "vouches"], &Vec::new()).await.context("could not list the vouches")?;
        if ctx.json {
            ctx.print_json(&v);
            return Ok(());
        }
        for (key, title, other, none) in [
            ("given", "Given", "subject", "You have not vouched for anyone."),
            ("received", "Received", "author", "Nobody has vouched for you yet."),
        ] {
            let list = v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
            if list.is_empty() {
                outln!("{none}");
                continue;
            }
            outln!("{title}:");
            let mut rows = vec![["VOUCH", "PERSON", "CONTEXT", "UNTIL"].map(String::from).to_vec()];
            for x in &list {
                let person = json!({ "name": str_of(x, "name"), "short": str_of(x, other).chars().skip(8).take(8).collect::<String>() });
                rows.push(vec![
                    short_id(str_of(x, "id")),
                    who(&person),
                    cut(&clean(str_of(x, "context")), 40),
                    output::u64_of(x, "expires_at").map(output::date).unwrap_or_default(),
                ]);
            }
            out!("{}", table(&rows));
        }
        return Ok(());
    }
    let (Some(person), Some(context)) = (&a.person, &a.context) else {
        return Err(CliError::Usage("give a person and --context, or `troc vouch list`".into()).into());
    };
    let mut body = json!({ "subject": person, "context": context });
    if let Some(d) = a.days {
        body["days"] = json!(d);
    }
    let v = api.post(&["v1", "vouches"], &body).await.context("could not vouch")?;
    if ctx.json {
        ctx.print_json(&v);
    } else {
        let until = output::u64_of(&v, "expires_at").map(output::date).unwrap_or_default();
        outln!(
            "Vouched for {person} until {until} (vouch {}); revoke it with `troc revoke {}`.",
            short_id(str_of(&v, "id")),
            str_of(&v, "id")
        );
    }
    Ok(())
}

pub async fn revoke(ctx: &Ctx, a: &RevokeArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api
        .post(&["v1", "records", &a.record, "revoke"], &json!({ "reason": a.reason }))
        .await
        .with_context(|| format!("could not revoke {}", a.record))?;
    if ctx.json {
        ctx.print_json(&v);
    } else {
        let what = match str_of(&v, "effect") {
            "erased" => "every node that gets the revocation deletes the record",
            "withdrawn" => "the review no longer counts and its content is no longer shown (no second review)",
            "undone" => "the deal step no longer counts",
            "waiting_for_other_party" => {
                "recorded and shown in the deal; the agreement stands until the other party revokes it too"
            }
            "annulled" => "both parties revoked it: annulled on every node that gets the revocations",
            "proposal_withdrawn" => "the proposal is withdrawn (the other party is told directly)",
            _ => "done",
        };
        outln!("Revoked {} ({}): {what}.", short_id(&a.record), short_id(str_of(&v, "revocation")));
    }
    Ok(())
}
