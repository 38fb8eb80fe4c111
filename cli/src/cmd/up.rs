//! `troc up`: runs the node and its local API in the foreground until Ctrl-C or SIGTERM, then stops
//! the API (which removes `api.json`) and the node, cleanly, and exits 0.
//!
//! Settings come from `troc.toml`; flags override them (lists such as `--bootstrap` and
//! `--community` add to the file's). Stdout gets one readable line per address and per event (or
//! one JSON object per line with `--json`); log lines go to stderr (`RUST_LOG`). While a large
//! catch-up runs, a progress bar is drawn on stderr when it is a terminal ([`CatchupProgress`]).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use troc_node::api::{ApiConfig, LocalProfile};
use troc_node::events::NodeEvent;
use troc_node::keystore;

use super::Ctx;
use crate::args::UpArgs;
use crate::config::{self, DEFAULT_API, Settings};
use crate::exit::CliError;

/// Everything `troc up` runs with, from troc.toml and the flags.
#[derive(Debug)]
struct Plan {
    node: troc_node::NodeConfig,
    api: ApiConfig,
}

fn plan(ctx: &Ctx, args: &UpArgs, settings: Settings) -> anyhow::Result<Plan> {
    let identity = keystore::load(&ctx.home).context("could not load the identity")?;
    let mut node = troc_node::NodeConfig::new(ctx.home.clone(), identity);
    if !args.listen.is_empty() {
        node.listen = args.listen.clone();
    } else if !settings.listen.is_empty() {
        node.listen = settings.listen.clone();
    }
    node.bootstrap = Vec::new();
    for addr in settings.bootstrap.iter().chain(&args.bootstrap) {
        if !node.bootstrap.contains(addr) {
            node.bootstrap.push(addr.clone());
        }
    }
    let mut communities: Vec<String> = Vec::new();
    for c in settings.community.iter().chain(&settings.communities).chain(&args.community) {
        if !communities.contains(c) {
            communities.push(c.clone());
        }
    }
    node.communities = communities;
    node.mdns = if args.no_mdns {
        false
    } else if args.mdns {
        true
    } else {
        settings.mdns.unwrap_or(true)
    };
    node.relay_server = args.relay_server || settings.relay_server;

    let default_api: SocketAddr = DEFAULT_API.parse().context("the default API address")?;
    let addr = args.api.or(settings.api).unwrap_or(default_api);
    let allow_public = args.api_public || settings.api_public;
    if !addr.ip().is_loopback() && !allow_public {
        return Err(CliError::Usage(format!(
            "the API address {addr} is not loopback: anyone who reaches it with the token can act in your name; \
             add --api-public (or api_public = true in troc.toml) if you mean it"
        ))
        .into());
    }
    let profile = LocalProfile {
        name: settings.name.clone().unwrap_or_default(),
        community: settings.community.clone(),
        location: settings.location.clone(),
    };
    let api = ApiConfig { addr, allow_public, home: ctx.home.clone(), profile, connections: Default::default() };
    Ok(Plan { node, api })
}

pub fn run(ctx: &Ctx, args: &UpArgs) -> anyhow::Result<()> {
    let settings = config::load(&ctx.home)?;
    let Plan { node: node_config, api: api_config } = plan(ctx, args, settings)?;
    let json = ctx.json;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("could not start the runtime")?;
    runtime.block_on(async move {
        let (node, mut events) = troc_node::Node::spawn(node_config).await.context("could not start the node")?;
        for addr in node.dial_addrs().await.context("could not read the node's addresses")? {
            if json {
                outln!("{}", json!({ "event": "listening", "address": addr.to_string() }));
            } else {
                outln!("listening on {addr}");
            }
        }
        let api = match troc_node::api::serve(node.clone(), api_config).await {
            Ok(api) => api,
            Err(e) => {
                let _ = node.shutdown().await;
                return Err(anyhow::Error::new(e).context("could not start the local API"));
            }
        };
        if json {
            outln!("{}", json!({ "event": "api", "address": api.local_addr().to_string() }));
        } else {
            outln!("api on http://{}", api.local_addr());
        }
        let mut progress = CatchupProgress::new(!json && std::io::stderr().is_terminal());
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                event = events.recv() => match event {
                    Ok(e) => {
                        progress.on_event(&e);
                        progress.suspend(|| print_event(&e, json));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events were dropped: the terminal is too slow");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        progress.clear();
        if json {
            outln!("{}", json!({ "event": "shutting_down" }));
        } else {
            outln!("shutting down");
        }
        api.shutdown().await;
        node.shutdown().await.context("the node did not shut down cleanly")?;
        Ok(())
    })
}

/// Resolves at Ctrl-C (SIGINT) or SIGTERM: what stops `troc up` and `troc demo`.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One readable line per event (or one JSON object per line with --json).
fn print_event(event: &NodeEvent, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            outln!("{line}");
        }
        return;
    }
    match event {
        NodeEvent::PeerConnected { peer } => outln!("connected to {peer}"),
        NodeEvent::PeerDisconnected { peer } => outln!("disconnected from {peer}"),
        NodeEvent::Stored { record_type, author, source, .. } => {
            outln!("new {record_type} from {} ({source:?})", author.short())
        }
        NodeEvent::SyncDone { peer, scope, fetched, pushed } if *fetched + *pushed > 0 => {
            outln!("caught up {scope} with {peer}: {fetched} fetched, {pushed} sent")
        }
        NodeEvent::Rejected { peer, code } => outln!("refused a record from {peer}: {code}"),
        _ => {}
    }
}

/// A catch-up this large (records to fetch) gets a progress bar.
const LARGE_CATCHUP: usize = 200;

/// One step of a catch-up session, as the progress bar needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyncStep {
    /// `fetched` of `total` records fetched so far.
    Progress { peer: String, scope: String, fetched: usize, total: usize },
    /// The session ended.
    Done { peer: String, scope: String },
}

/// The catch-up steps a node event tells: the one place that maps the node's sync events to the
/// progress bar.
fn sync_step_of(event: &NodeEvent) -> Option<SyncStep> {
    match event {
        NodeEvent::SyncProgress { peer, scope, fetched, total } => {
            Some(SyncStep::Progress { peer: peer.to_base58(), scope: scope.clone(), fetched: *fetched, total: *total })
        }
        NodeEvent::SyncDone { peer, scope, .. } => {
            Some(SyncStep::Done { peer: peer.to_base58(), scope: scope.clone() })
        }
        _ => None,
    }
}

/// Progress bars on stderr, one per large catch-up session (peer and scope) under way.
#[derive(Debug)]
struct CatchupProgress {
    multi: MultiProgress,
    bars: HashMap<(String, String), ProgressBar>,
    enabled: bool,
}

impl CatchupProgress {
    fn new(enabled: bool) -> Self {
        let target = if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        CatchupProgress { multi: MultiProgress::with_draw_target(target), bars: HashMap::new(), enabled }
    }

    fn on_event(&mut self, event: &NodeEvent) {
        if !self.enabled {
            return;
        }
        match sync_step_of(event) {
            Some(SyncStep::Progress { peer, scope, fetched, total }) => self.progress(peer, scope, fetched, total),
            Some(SyncStep::Done { peer, scope }) => {
                if let Some(bar) = self.bars.remove(&(peer, scope)) {
                    bar.finish_and_clear();
                }
            }
            None => {}
        }
    }

    fn progress(&mut self, peer: String, scope: String, fetched: usize, total: usize) {
        let key = (peer, scope);
        if !self.bars.contains_key(&key) && total < LARGE_CATCHUP {
            return;
        }
        let bar = self.bars.entry(key).or_insert_with_key(|(peer, scope)| {
            let bar = self.multi.add(ProgressBar::new(total as u64));
            let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} records ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            let short: String = peer.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            bar.set_message(format!("catching up {scope} with …{short}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_length(total as u64);
        bar.set_position(fetched.min(total) as u64);
    }

    /// Runs `f` (which prints to stdout) with the bars hidden, so lines and bars do not mix.
    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.bars.is_empty() { f() } else { self.multi.suspend(f) }
    }

    fn clear(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_follow_progress_and_end_with_the_session() {
        let mut p = CatchupProgress::new(true);
        p.multi.set_draw_target(ProgressDrawTarget::hidden());
        p.progress("12D3KooWpeer".into(), "community/north".into(), 10, 50);
        assert!(p.bars.is_empty(), "small catch-ups get no bar");
        p.progress("12D3KooWpeer".into(), "community/north".into(), 10, 500);
        assert_eq!(p.bars.len(), 1);
        let peer = libp2p::PeerId::random();
        p.on_event(&NodeEvent::SyncProgress { peer, scope: "global".into(), fetched: 300, total: 1000 });
        assert_eq!(p.bars.len(), 2);
        p.on_event(&NodeEvent::SyncDone { peer, scope: "global".into(), fetched: 1000, pushed: 0 });
        assert_eq!(p.bars.len(), 1);
        p.clear();
        assert!(p.bars.is_empty());
    }

    #[test]
    fn a_public_api_address_needs_the_flag() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        keystore::create(dir.path()).unwrap();
        let ctx = Ctx { home: dir.path().to_path_buf(), json: false };
        let parse = |args: &[&str]| {
            let cli = crate::args::Cli::try_parse_from([&["troc", "up"][..], args].concat()).unwrap();
            let crate::args::Command::Up(a) = cli.command else { panic!() };
            a
        };
        let err = plan(&ctx, &parse(&["--api", "0.0.0.0:7711"]), Settings::default()).unwrap_err();
        assert_eq!(crate::exit::classify(&err).exit, crate::exit::USAGE);
        assert!(plan(&ctx, &parse(&["--api", "0.0.0.0:7711", "--api-public"]), Settings::default()).is_ok());
        let settings = Settings {
            community: Some("north".into()),
            communities: vec!["north".into(), "south".into()],
            mdns: Some(false),
            name: Some("Alice".into()),
            ..Settings::default()
        };
        let p = plan(&ctx, &parse(&["--community", "east", "--mdns"]), settings.clone()).unwrap();
        assert_eq!(p.node.communities, vec!["north", "south", "east"]);
        assert!(p.node.mdns, "the flag overrides troc.toml");
        assert_eq!(p.api.profile.name, "Alice");
        assert_eq!(p.api.addr.to_string(), DEFAULT_API);
        assert!(!plan(&ctx, &parse(&[]), settings).unwrap().node.mdns);
    }
}
