//! The commands: one module per group of the top-level help. [`run`] dispatches a parsed command
//! line; commands that talk to the node do it through [`crate::client::Api`] on a small tokio
//! runtime, `troc up` builds its own multi-threaded one.

use std::path::PathBuf;

use anyhow::Context;

use crate::args::{Cli, Command};
use crate::config;

mod alerts;
mod backup;
mod deals;
mod listings;
mod network;
mod reputation;
mod setup;
mod up;
mod watch;

pub(crate) use up::shutdown_signal;

/// What every command gets: the home and the output mode.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub home: PathBuf,
    pub json: bool,
}

impl Ctx {
    /// Prints a JSON value as one document on stdout.
    pub fn print_json(&self, value: &serde_json::Value) {
        outln!("{value}");
    }
}

/// Runs a future on a single-threaded runtime (client commands).
fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("could not start the runtime")?;
    Ok(runtime.block_on(fut))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Commands that need no home run first, so they work without HOME.
    match &cli.command {
        Command::Completions(args) => return setup::completions(args),
        Command::Man(args) => return setup::man(args),
        _ => {}
    }
    let home = config::resolve_home(cli.home.as_deref())?;
    let ctx = Ctx { home, json: cli.json };
    match cli.command {
        Command::Init(args) => setup::init(&ctx, &args),
        Command::Id => setup::id(&ctx),
        Command::Up(args) => up::run(&ctx, &args),
        Command::Demo(args) => crate::demo::run(&ctx.home, &args, ctx.json),
        Command::Status => block_on(network::status(&ctx))?,
        Command::Peers => block_on(network::peers(&ctx))?,
        Command::Connect(args) => block_on(network::connect(&ctx, &args))?,
        Command::Invite(args) => block_on(network::invite(&ctx, &args))?,
        Command::Join(args) => block_on(network::join(&ctx, &args))?,
        Command::Offer(crate::args::OfferCommand::Add(args)) => {
            block_on(listings::add(&ctx, &args.kind, &args.title, &args.fields))?
        }
        Command::Want(crate::args::WantCommand::Add(args)) => {
            block_on(listings::add(&ctx, "want", &args.title, &args.fields))?
        }
        Command::Listing(cmd) => block_on(listings::listing(&ctx, cmd))?,
        Command::Mine => block_on(listings::mine(&ctx))?,
        Command::Search(args) => block_on(listings::search(&ctx, &args))?,
        Command::Alert(cmd) => block_on(alerts::run(&ctx, cmd))?,
        Command::Watch(args) => block_on(watch::run(&ctx, &args))?,
        Command::Deal(cmd) => block_on(deals::deal(&ctx, cmd))?,
        Command::Review(args) => block_on(deals::review(&ctx, &args))?,
        Command::Inbox => block_on(deals::inbox(&ctx))?,
        Command::Block(args) => block_on(deals::block(&ctx, &args))?,
        Command::Unblock(args) => block_on(deals::unblock(&ctx, &args))?,
        Command::Rep(args) => block_on(reputation::rep(&ctx, &args))?,
        Command::Vouch(args) => block_on(reputation::vouch(&ctx, &args))?,
        Command::Revoke(args) => block_on(reputation::revoke(&ctx, &args))?,
        Command::Export(args) => block_on(backup::export(&ctx, &args))?,
        Command::Import(args) => block_on(backup::import(&ctx, &args))?,
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}
