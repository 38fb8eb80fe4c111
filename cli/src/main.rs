//! `troc`: the command-line program of a troc node.
//!
//! Errors reach the user as a cause chain (`error: …` then `  caused by: …` lines) and a documented
//! exit code (see [`exit`] and `docs/cli.md`). With `--json`, results are printed as one JSON
//! document on stdout and errors as `{"error": {"code": …, "message": …}}` on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use troc_node::keystore::{self, KeystoreError};

/// Exit codes, stable for scripts.
mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any error not listed below.
    pub const ERROR: u8 = 1;
    /// Bad arguments (also what clap uses).
    pub const USAGE: u8 = 2;
    /// The node is not running (commands that need it).
    #[allow(dead_code)] // used by the node commands of the CLI issue
    pub const NOT_RUNNING: u8 = 3;
    /// A thing asked for does not exist (no identity yet, unknown record ...).
    pub const NOT_FOUND: u8 = 4;
    /// The command would overwrite something that must not be (an identity).
    pub const CONFLICT: u8 = 5;
}

/// troc: lend, share, swap, barter and give with your neighbours, peer to peer.
///
/// Every person runs a node that holds their ed25519 identity, gossips signed offers and wants to the
/// neighbourhood and keeps every verified record locally.
#[derive(Debug, Parser)]
#[command(name = "troc", version, about, long_about, propagate_version = true)]
struct Cli {
    /// The node's home directory (identity, config, database).
    #[arg(long, global = true, env = "TROC_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Print results as JSON (stable, documented in docs/cli.md).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this node's identity (an ed25519 key, saved with mode 0600). Never overwrites one.
    #[command(after_help = "Examples:\n  troc init\n  troc --home /tmp/alice init")]
    Init,
    /// Show this node's identity: PeerId, short form and public key.
    #[command(after_help = "Examples:\n  troc id\n  troc id --json")]
    Id,
    /// Run the node in the foreground until Ctrl-C (log detail with RUST_LOG, e.g. RUST_LOG=debug).
    #[command(
        after_help = "Examples:\n  troc up --community north-end\n  troc up --listen /ip4/0.0.0.0/tcp/7710 \\\n      --bootstrap /ip4/203.0.113.5/tcp/7710/p2p/12D3KooW...\n  troc up --no-mdns --relay-server"
    )]
    Up(UpArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Address to listen on (repeatable). Default: TCP and QUIC on port 7710, every interface.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<libp2p::Multiaddr>,
    /// A peer to dial and keep connected, ending in /p2p/<PeerId> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<libp2p::Multiaddr>,
    /// A community to follow (repeatable), e.g. north-end.
    #[arg(long, value_name = "SLUG", value_parser = parse_community)]
    community: Vec<String>,
    /// Do not look for neighbours on the local network (mDNS).
    #[arg(long)]
    no_mdns: bool,
    /// Serve as a relay for peers behind NAT (for a node with a public address).
    #[arg(long)]
    relay_server: bool,
}

/// The default home: `$XDG_DATA_HOME/troc`, else `~/.local/share/troc`.
fn default_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("troc"));
    }
    let home =
        std::env::var_os("HOME").filter(|d| !d.is_empty()).context("neither --home, TROC_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/troc"))
}

fn identity_json(id: &troc_protocol::Identity) -> serde_json::Value {
    json!({
        "peer_id": id.peer_id().to_base58(),
        "short": id.public().short(),
        "public_key": hex::encode(id.public().as_bytes()),
    })
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let home = match &cli.home {
        Some(h) => h.clone(),
        None => default_home()?,
    };
    match &cli.command {
        Command::Init => {
            let id = keystore::create(&home).context("could not create the identity")?;
            if cli.json {
                println!("{}", json!({ "home": home, "identity": identity_json(&id) }));
            } else {
                println!("Created identity {} ({}) in {}", id.peer_id(), id.public().short(), home.display());
            }
        }
        Command::Up(args) => return up(&home, args, cli.json),
        Command::Id => {
            let id = keystore::load(&home).context("could not load the identity")?;
            if cli.json {
                println!("{}", identity_json(&id));
            } else {
                println!("peer id:    {}", id.peer_id());
                println!("short:      {}", id.public().short());
                println!("public key: {}", hex::encode(id.public().as_bytes()));
            }
        }
    }
    Ok(())
}

/// A community slug, checked as the records check it.
fn parse_community(s: &str) -> Result<String, String> {
    troc_protocol::types::check_community(s).map(|()| s.to_owned()).map_err(|e| e.to_string())
}

/// Runs the node until Ctrl-C (or SIGTERM), then shuts it down cleanly.
fn up(home: &std::path::Path, args: &UpArgs, json: bool) -> anyhow::Result<()> {
    let identity = keystore::load(home).context("could not load the identity")?;
    let mut config = troc_node::NodeConfig::new(home.to_path_buf(), identity);
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    config.bootstrap = args.bootstrap.clone();
    config.communities = args.community.clone();
    config.mdns = !args.no_mdns;
    config.relay_server = args.relay_server;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("could not start the runtime")?;
    runtime.block_on(async move {
        let (node, mut events) = troc_node::Node::spawn(config).await.context("could not start the node")?;
        for addr in node.dial_addrs().await? {
            if json {
                println!("{}", json!({ "event": "listening", "address": addr.to_string() }));
            } else {
                println!("listening on {addr}");
            }
        }
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                event = events.recv() => match event {
                    Ok(e) => print_event(&e, json),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events were dropped: the terminal is too slow");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        if !json {
            println!("shutting down");
        }
        node.shutdown().await.context("the node did not shut down cleanly")?;
        Ok(())
    })
}

async fn shutdown_signal() {
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
fn print_event(event: &troc_node::events::NodeEvent, json: bool) {
    use troc_node::events::NodeEvent;
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
        return;
    }
    match event {
        NodeEvent::PeerConnected { peer } => println!("connected to {peer}"),
        NodeEvent::PeerDisconnected { peer } => println!("disconnected from {peer}"),
        NodeEvent::Stored { record_type, author, source, .. } => {
            println!("new {record_type} from {} ({source:?})", author.short())
        }
        NodeEvent::SyncDone { peer, scope, fetched, pushed } if *fetched + *pushed > 0 => {
            println!("caught up {scope} with {peer}: {fetched} fetched, {pushed} sent")
        }
        NodeEvent::Rejected { peer, code } => println!("refused a record from {peer}: {code}"),
        _ => {}
    }
}

/// Maps an error to its exit code and stable error code.
fn classify(err: &anyhow::Error) -> (u8, &'static str) {
    for cause in err.chain() {
        if let Some(k) = cause.downcast_ref::<KeystoreError>() {
            return match k {
                KeystoreError::Missing { .. } => (exit::NOT_FOUND, "no_identity"),
                KeystoreError::AlreadyExists { .. } => (exit::CONFLICT, "identity_exists"),
                KeystoreError::TooOpen { .. } => (exit::ERROR, "key_file_too_open"),
                KeystoreError::Corrupt { .. } => (exit::ERROR, "key_file_corrupt"),
                KeystoreError::Io { .. } | KeystoreError::Entropy(_) => (exit::ERROR, "io"),
            };
        }
    }
    (exit::ERROR, "error")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,troc_node=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let (code, name) = classify(&err);
            if cli.json {
                let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
                eprintln!("{}", json!({ "error": { "code": name, "message": chain.join(": "), "chain": chain } }));
            } else {
                eprintln!("error: {err}");
                for cause in err.chain().skip(1) {
                    eprintln!("  caused by: {cause}");
                }
            }
            ExitCode::from(code)
        }
    }
}
