//! `troc`: the command-line program of a troc node.
//!
//! `troc up` runs the node and its local API; every other command that needs the node talks to that
//! API (`docs/api.md`), so a bot can do whatever a person does here. Modules: [`args`] (the command
//! tree), [`cmd`] (the commands), [`client`] (the API client), [`sse`] (the event stream parser),
//! [`config`] (the home and troc.toml), [`output`] (human output), [`exit`] (exit and error codes).
//!
//! Errors reach the user as a cause chain (`error: …` then `  caused by: …` lines) and a documented
//! exit code (`docs/cli.md`). With `--json`, results are printed as one JSON document on stdout and
//! errors as `{"error": {"code": …, "message": …, "chain": […]}}` on stderr.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::FromArgMatches;

/// `println!` that ends the program quietly (exit 0) when standard output is closed early
/// (`troc search drill | head -1`) instead of panicking, and reports any other write error.
macro_rules! outln {
    () => { outln!("") };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

/// `print!` with the same handling as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

/// A write to standard output failed: a closed pipe is the reader's choice (exit 0), anything else
/// is an error (exit 1).
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: could not write to standard output: {e}");
    std::process::exit(1);
}

mod args;
mod client;
mod cmd;
mod config;
mod demo;
mod exit;
mod output;
mod sse;

/// jemalloc, configured to give freed memory back (see `troc_node::alloc`).
#[global_allocator]
static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;

fn main() -> ExitCode {
    troc_node::alloc::configure();
    let parsed = args::command().try_get_matches().and_then(|m| args::Cli::from_arg_matches(&m));
    // `troc up` logs the node's main steps; the demo runs many nodes and prints its own account of
    // them, so it logs only warnings. RUST_LOG overrides both.
    let default_filter = if matches!(&parsed, Ok(cli) if matches!(cli.command, args::Command::Demo(_))) {
        "warn"
    } else {
        "warn,troc_node=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    match cmd::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => ExitCode::from(exit::report(&err, json)),
    }
}
