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
    match cli.command {
        Command::Init => {
            let id = keystore::create(&home).context("could not create the identity")?;
            if cli.json {
                println!("{}", json!({ "home": home, "identity": identity_json(&id) }));
            } else {
                println!("Created identity {} ({}) in {}", id.peer_id(), id.public().short(), home.display());
            }
        }
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
