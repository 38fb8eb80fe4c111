//! The network commands: `troc status`, `troc peers`, `troc connect`, `troc invite`, `troc join`.
//! Each is one request to the running node; `--json` prints the API's answer as it came.

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;
use crate::args::{ConnectArgs, InviteArgs, JoinArgs};
use crate::client::{Api, DIAL_TIMEOUT};
use crate::output::{self, clean, str_of, table, u64_of};

pub async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let s = api.get(&["v1", "status"], &Vec::new()).await.context("could not read the node's status")?;
    if ctx.json {
        ctx.print_json(&s);
        return Ok(());
    }
    let list = |key: &str| -> Vec<String> {
        s.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(clean).collect())
            .unwrap_or_default()
    };
    let mut rows = vec![
        vec!["peer id".to_owned(), format!("{} ({})", str_of(&s, "peer_id"), str_of(&s, "short"))],
        vec!["name".to_owned(), clean(str_of(&s, "name"))],
        vec!["community".to_owned(), clean(str_of(&s, "community"))],
        vec!["location".to_owned(), clean(str_of(&s, "location"))],
        vec!["following".to_owned(), list("communities").join(", ")],
        vec![
            "version".to_owned(),
            format!("{}, up {}", str_of(&s, "version"), output::duration(u64_of(&s, "uptime_secs").unwrap_or(0))),
        ],
        vec!["api".to_owned(), str_of(&s, "api_address").to_owned()],
        vec!["peers".to_owned(), u64_of(&s, "peers").map(|p| p.to_string()).unwrap_or_default()],
    ];
    if let Some(store) = s.get("store") {
        rows.push(vec![
            "store".to_owned(),
            format!(
                "{} records, {} listings, {}",
                u64_of(store, "records").unwrap_or(0),
                u64_of(store, "listings").unwrap_or(0),
                output::bytes(u64_of(store, "bytes").unwrap_or(0))
            ),
        ]);
    }
    for (i, addr) in list("listen_addresses").into_iter().enumerate() {
        rows.push(vec![if i == 0 { "listening".to_owned() } else { String::new() }, addr]);
    }
    rows.retain(|r| !r[1].is_empty());
    out!("{}", table(&rows));
    Ok(())
}

pub async fn peers(ctx: &Ctx) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api.get(&["v1", "peers"], &Vec::new()).await.context("could not list the peers")?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let peers = v.get("peers").and_then(Value::as_array).cloned().unwrap_or_default();
    if peers.is_empty() {
        outln!("No peers connected.");
        return Ok(());
    }
    let mut rows = vec![vec!["SHORT".into(), "PEER ID".into(), "SCORE".into(), "ADDRESS".into()]];
    for p in &peers {
        let score = p.get("score").and_then(Value::as_f64).map(|s| format!("{s:.1}")).unwrap_or_default();
        rows.push(vec![
            str_of(p, "short").to_owned(),
            str_of(p, "peer_id").to_owned(),
            score,
            clean(str_of(p, "address")),
        ]);
    }
    out!("{}", table(&rows));
    Ok(())
}

pub async fn connect(ctx: &Ctx, args: &ConnectArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let body = json!({ "address": args.address.to_string() });
    let v = api
        .call(Method::POST, &["v1", "peers"], &Vec::new(), Some(&body), DIAL_TIMEOUT)
        .await
        .with_context(|| format!("could not connect to {}", args.address))?
        .unwrap_or(Value::Null);
    if ctx.json {
        ctx.print_json(&v);
    } else {
        outln!("Connected to {}", str_of(&v, "peer_id"));
    }
    Ok(())
}

/// The invite as a QR code of unicode half-blocks (two modules per character cell), dark on light.
pub fn qr_text(data: &str) -> anyhow::Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(data.as_bytes()).context("the invite is too long for a QR code")?;
    Ok(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

pub async fn invite(ctx: &Ctx, args: &InviteArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let v = api.get(&["v1", "invite"], &Vec::new()).await.context("could not make an invite")?;
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let invite = str_of(&v, "invite");
    outln!("Give this invite to a neighbour; they run: troc join <invite>\n");
    outln!("{invite}\n");
    let addresses: Vec<&str> = v
        .get("addresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !addresses.is_empty() {
        outln!("Addresses (for troc connect):");
        for a in addresses {
            outln!("  {}", clean(a));
        }
    }
    let communities: Vec<&str> = v
        .get("communities")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !communities.is_empty() {
        outln!("Communities: {}", clean(&communities.join(", ")));
    }
    if !args.no_qr && !invite.is_empty() {
        match qr_text(invite) {
            Ok(qr) => outln!("\n{qr}"),
            Err(e) => outln!("\n(no QR code: {e})"),
        }
    }
    Ok(())
}

pub async fn join(ctx: &Ctx, args: &JoinArgs) -> anyhow::Result<()> {
    let api = Api::open(&ctx.home)?;
    let body = json!({ "invite": args.invite });
    let v = api
        .call(Method::POST, &["v1", "join"], &Vec::new(), Some(&body), DIAL_TIMEOUT)
        .await
        .context("could not join")?
        .unwrap_or(Value::Null);
    if ctx.json {
        ctx.print_json(&v);
        return Ok(());
    }
    let communities: Vec<&str> = v
        .get("communities")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let peer = str_of(&v, "peer_id");
    if v.get("connected").and_then(Value::as_bool) == Some(true) {
        outln!("Joined {peer}: connected");
    } else {
        outln!("Joined {peer}: not reachable now; the node will dial it again at every start");
    }
    if !communities.is_empty() {
        outln!("Following: {}", clean(&communities.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn invites_render_as_qr_codes() {
        let qr = super::qr_text("troc1eyJ2IjoxLCJwZWVyX2lkIjoiMTJEM0tvb1cifQ").unwrap();
        assert!(qr.lines().count() > 10);
        assert!(qr.contains('▀') || qr.contains('▄') || qr.contains('█'));
    }
}
