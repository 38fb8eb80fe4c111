//! `troc`: the command-line program of a troc node.

use clap::Parser;

/// troc: lend, share, swap and barter with your neighbours, peer to peer.
#[derive(Debug, Parser)]
#[command(name = "troc", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
