//! The command tree (clap derive): every command, option and value parser of `troc`, with examples.
//!
//! Values are checked here where they can be (a kind, a category, a community slug, a geohash, a
//! listing id ...), so a bad value is a usage error (exit 2) before anything is done. The same
//! definitions generate the shell completions and the man pages ([`command`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use troc_protocol::{Category, Kind};

/// troc: lend, share, swap, barter and give with your neighbours, peer to peer.
///
/// Every person runs a node (`troc up`) that holds their ed25519 identity, gossips signed offers and
/// wants to the neighbourhood and keeps every verified record locally. The other commands talk to
/// the running node through its local HTTP API (docs/api.md).
#[derive(Debug, Parser)]
#[command(name = "troc", version, about, long_about, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The node's home directory (identity, troc.toml, database). Default: the platform data
    /// directory, e.g. ~/.local/share/troc.
    #[arg(long, global = true, env = "TROC_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Print results as JSON (stable, documented in docs/cli.md); errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands, grouped in the top-level help by [`GROUPS`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this node's identity and troc.toml (name, community, coarse location).
    #[command(after_help = "Examples:\n  troc init --name Alice --community north-end --location 51.5202,-0.0979\n  \
                            troc --home /tmp/alice init --name Alice --location gcpvj")]
    Init(InitArgs),
    /// Show this node's identity: PeerId, short form and public key.
    #[command(after_help = "Examples:\n  troc id\n  troc id --json")]
    Id,
    /// Run the node in the foreground until Ctrl-C, with its local API.
    #[command(
        long_about = "Run the node in the foreground until Ctrl-C (or SIGTERM), with its local API.\n\n\
                      Settings come from troc.toml in the home; flags override them. Log detail goes \
                      to stderr and follows RUST_LOG (e.g. RUST_LOG=debug).",
        after_help = "Examples:\n  troc up\n  troc up --community north-end --api 127.0.0.1:7711\n  \
                      troc up --listen /ip4/0.0.0.0/tcp/7710 \\\n      --bootstrap /ip4/203.0.113.5/tcp/7710/p2p/12D3KooW...\n  \
                      troc up --no-mdns --relay-server --api 0.0.0.0:7711 --api-public"
    )]
    Up(UpArgs),
    /// Start a small demo neighbourhood on this machine and leave it running to explore.
    #[command(
        long_about = "Start a small neighbourhood on this machine: several nodes on loopback, each with its own \
                      home under <home>/demo/<name>, identity and local API; generated people publish offers and \
                      wants. Shows each listing reaching every node, checks that every node has all of them, \
                      prints the commands to try (TROC_HOME=<home>/demo/<name> troc search drill ...), and keeps \
                      running until Ctrl-C. The previous demo's data is wiped at start unless --keep.",
        after_help = "Examples:\n  troc demo\n  troc demo --nodes 8 --community riverside\n  \
                      troc demo --keep\n  troc demo --nodes 3 --exit-after-setup --json"
    )]
    Demo(crate::demo::DemoArgs),
    /// Show the running node: identity, addresses, peers, store and counters.
    #[command(after_help = "Examples:\n  troc status\n  troc status --json | jq .peers")]
    Status,
    /// List the peers the node is connected to.
    #[command(after_help = "Examples:\n  troc peers\n  troc peers --json")]
    Peers,
    /// Dial a peer by its address and wait until connected.
    #[command(after_help = "Examples:\n  troc connect /ip4/192.0.2.7/tcp/7710/p2p/12D3KooW...")]
    Connect(ConnectArgs),
    /// Show an invite for a neighbour: the node's addresses, as text and as a QR code.
    #[command(after_help = "Examples:\n  troc invite\n  troc invite --no-qr\n  troc invite --json | jq -r .invite")]
    Invite(InviteArgs),
    /// Join a neighbour's node from their invite: follow its communities and connect.
    #[command(after_help = "Examples:\n  troc join troc1eyJ2IjoxLCJwZWVyX2lkIjoi...")]
    Join(JoinArgs),
    /// Offer something: lend, share, swap, barter or give a thing or a service.
    #[command(
        subcommand,
        after_help = "Examples:\n  troc offer add lend \"Cordless drill\" -c tools --deposit \"20 EUR\"\n  \
                                        troc offer add give \"Apple tree seedlings\" -c garden"
    )]
    Offer(OfferCommand),
    /// Ask for something.
    #[command(subcommand, after_help = "Examples:\n  troc want add \"Ladder, 3 m\" -c tools --max-loan-days 2")]
    Want(WantCommand),
    /// Show, edit, renew or withdraw a listing.
    #[command(
        subcommand,
        after_help = "Examples:\n  troc listing show 3fa9c2\n  troc listing edit 3fa9c2 --title \"Cordless drill, 18 V\"\n  \
                                        troc listing renew 3fa9c2\n  troc listing withdraw 3fa9c2"
    )]
    Listing(ListingCommand),
    /// List one's own current listings.
    #[command(after_help = "Examples:\n  troc mine\n  troc mine --json | jq -r '.listings[].id'")]
    Mine,
    /// Search the listings the node knows.
    #[command(
        after_help = "Examples:\n  troc search drill\n  troc search --kind lend,share --category tools --near u09tv --within 5\n  \
                            troc search --sort newest --limit 50 --json"
    )]
    Search(SearchArgs),
    /// Saved searches: be told when a matching listing appears.
    #[command(
        subcommand,
        after_help = "Examples:\n  troc alert add drills drill --kind lend,share\n  troc alert list\n  \
                                        troc alert remove a1b2c3d4"
    )]
    Alert(AlertCommand),
    /// Stream the node's events as NDJSON (one JSON object per line), for bots and pipelines.
    #[command(
        long_about = "Stream the node's events as NDJSON: one JSON object per line, the event's data \
                      plus \"event\": <type> (docs/api.md lists the types). Exits 0 when the node \
                      shuts down, 3 if it is not running.",
        after_help = "Examples:\n  troc watch\n  troc watch --type listing_new,alert --kind give\n  \
                      troc watch --type alert | jq -r .listing.title\n  troc watch --human"
    )]
    Watch(WatchArgs),
    /// Deals: propose, answer, hand over, give back, complete, cancel, extend, list, show.
    #[command(
        subcommand,
        after_help = "Examples:\n  troc deal propose 3fa9c2 --days 3 --message \"Saturday?\"\n  troc deal accept 9c1e77aa\n  \
                      troc deal handover 9c1e77aa\n  troc deal list\n  troc deal show 9c1e77aa --json"
    )]
    Deal(DealCommand),
    /// Review the other party of a deal (blind: revealed once both reviewed, or after 14 days).
    #[command(after_help = "Examples:\n  troc review 9c1e77aa positive --text \"Careful and on time.\"")]
    Review(ReviewArgs),
    /// What waits for you: proposals, extension requests, due and overdue loans, your moves.
    #[command(after_help = "Examples:\n  troc inbox\n  troc inbox --json")]
    Inbox,
    /// Block a person on this node: their records are hidden here and their deal requests refused.
    #[command(after_help = "Examples:\n  troc block 12D3KooW...\n  troc block --list")]
    Block(BlockArgs),
    /// Unblock a person.
    #[command(after_help = "Examples:\n  troc unblock 12D3KooW...")]
    Unblock(PersonArg),
    /// A person's reputation in your node's view: the evidence, the standing, why (--explain).
    #[command(
        long_about = "A person's reputation as your node sees it, computed from signed records with you as \
                      the viewer: deals completed, distinct counterparties and how many of them you trust, \
                      negatives, vouches, and the standing (unknown when the evidence is thin, probation, \
                      established, blocked). --explain shows the strongest paths of trust from you to them, \
                      hop by hop. --top lists the best-ranked people in your view.",
        after_help = "Examples:\n  troc rep 12D3KooW...\n  troc rep 12D3KooW... --explain\n  troc rep --top 20\n  \
                      troc rep 12D3KooW... --json | jq .standing"
    )]
    Rep(RepArgs),
    /// Vouch for a person ("I know this person"), or list the vouches given and received.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  troc vouch 12D3KooW... --context \"Next-door neighbour for ten years\"\n  \
                      troc vouch 12D3KooW... --context \"Colleague\" --days 90\n  troc vouch list"
    )]
    Vouch(VouchArgs),
    /// Revoke one of your records: a review, a vouch, your profile, a listing.
    #[command(after_help = "Examples:\n  troc revoke 4be0c1d2...  --reason \"Written in anger\"")]
    Revoke(RevokeArgs),
    /// Write a backup of the identity and one's own records.
    #[command(after_help = "Examples:\n  troc export backup.json\n  troc export --no-identity records.json\n  \
                            troc export --force backup.json")]
    Export(ExportArgs),
    /// Restore a backup: the identity into an empty home, the records into the running node.
    #[command(after_help = "Examples:\n  troc --home /tmp/restored import backup.json")]
    Import(ImportArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  troc completions bash > ~/.local/share/bash-completion/completions/troc\n  \
                            troc completions zsh > ~/.zfunc/_troc\n  troc completions fish > ~/.config/fish/completions/troc.fish")]
    Completions(CompletionsArgs),
    /// Print the man page (troc.1), or write one page per command into a directory.
    #[command(after_help = "Examples:\n  troc man | man -l -\n  troc man --dir /usr/local/share/man/man1")]
    Man(ManArgs),
}

/// How the top-level help groups the commands. Every subcommand is in exactly one group (a test
/// checks it).
pub const GROUPS: &[(&str, &[&str])] = &[
    ("Getting started", &["init", "id", "up", "demo"]),
    ("The network", &["status", "peers", "connect", "invite", "join"]),
    ("Offers and wants", &["offer", "want", "listing", "mine", "search"]),
    ("Alerts and events", &["alert", "watch"]),
    ("Deals", &["deal", "review", "inbox", "block", "unblock"]),
    ("Reputation", &["rep", "vouch", "revoke"]),
    ("Backup", &["export", "import"]),
    ("Shell", &["completions", "man", "help"]),
];

/// The full command, with the grouped top-level help: what `main` parses with and what completions
/// and man pages are generated from.
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let mut groups = String::new();
    for (title, names) in GROUPS {
        groups.push_str(&format!("{title}:\n"));
        for name in *names {
            let about = if *name == "help" {
                "Print this message or the help of the given command".to_owned()
            } else {
                cmd.find_subcommand(name).and_then(|c| c.get_about()).map(|a| a.to_string()).unwrap_or_default()
            };
            groups.push_str(&format!("  {name:<12} {about}\n"));
        }
        groups.push('\n');
    }
    cmd.help_template(format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{groups}Options:\n{{options}}{{after-help}}"
    ))
    .after_help("Run `troc <command> --help` for a command's options and examples.")
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Your display name, shown with your listings (default: the short form of your id).
    #[arg(long, value_parser = parse_name)]
    pub name: Option<String>,
    /// Your community (a slug such as north-end): followed by `troc up`, and the default
    /// community of your listings.
    #[arg(long, value_name = "SLUG", value_parser = parse_community)]
    pub community: Option<String>,
    /// Your coarse location: "LAT,LON" or a geohash. Stored coarsened to 5 geohash characters
    /// (about 5 km), never more precise.
    #[arg(long, value_name = "LAT,LON|GEOHASH", value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on (repeatable). Default: troc.toml `listen`, else TCP and QUIC on port 7710.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<libp2p::Multiaddr>,
    /// A peer to dial and keep connected, ending in /p2p/<PeerId> (repeatable; added to troc.toml's).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<libp2p::Multiaddr>,
    /// A community to follow (repeatable; added to troc.toml's), e.g. north-end.
    #[arg(long, value_name = "SLUG", value_parser = parse_community)]
    pub community: Vec<String>,
    /// Look for neighbours on the local network with mDNS (the default).
    #[arg(long, overrides_with = "no_mdns")]
    pub mdns: bool,
    /// Do not look for neighbours on the local network (mDNS).
    #[arg(long, overrides_with = "mdns")]
    pub no_mdns: bool,
    /// Serve as a relay for peers behind NAT (for a node with a public address).
    #[arg(long)]
    pub relay_server: bool,
    /// The local API's address (port 0 picks a free one). Default: troc.toml `api`, else
    /// 127.0.0.1:7711.
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Allow the API on an address other than loopback. Anyone who can reach it and read the token
    /// can act in your name.
    #[arg(long)]
    pub api_public: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The peer's address, e.g. /ip4/192.0.2.7/tcp/7710/p2p/12D3KooW...
    #[arg(value_name = "MULTIADDR")]
    pub address: libp2p::Multiaddr,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// Do not print the QR code.
    #[arg(long)]
    pub no_qr: bool,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invite (troc1...), as `troc invite` prints it.
    #[arg(value_name = "INVITE", value_parser = parse_invite)]
    pub invite: String,
}

#[derive(Debug, Subcommand)]
pub enum OfferCommand {
    /// Publish an offer: lend, share, swap, barter or give.
    #[command(
        after_help = "Examples:\n  troc offer add lend \"Cordless drill\" -c tools --tag drill --deposit \"20 EUR\"\n  \
                            troc offer add give \"Apple tree seedlings\" --category garden\n  \
                            troc offer add swap \"Kids bike, 16 inch\" --category kids --in-return \"a 20 inch bike\"\n  \
                            troc offer add barter \"Bike repair\" --category repair --hours 2 --in-return \"help in the garden\""
    )]
    Add(OfferAddArgs),
}

#[derive(Debug, Subcommand)]
pub enum WantCommand {
    /// Publish a want: something you are looking for.
    #[command(after_help = "Examples:\n  troc want add \"Ladder, 3 m\" --category tools --max-loan-days 2\n  \
                            troc want add \"Italian lessons\" --category lessons --in-return \"English lessons\"")]
    Add(WantAddArgs),
}

#[derive(Debug, Args)]
pub struct OfferAddArgs {
    /// What kind of offer.
    #[arg(value_name = "KIND", value_parser = offer_kind_parser())]
    pub kind: String,
    /// A short title.
    #[arg(value_name = "TITLE", value_parser = parse_title)]
    pub title: String,
    #[command(flatten)]
    pub fields: ListingFields,
}

#[derive(Debug, Args)]
pub struct WantAddArgs {
    /// A short title.
    #[arg(value_name = "TITLE", value_parser = parse_title)]
    pub title: String,
    #[command(flatten)]
    pub fields: ListingFields,
}

/// The fields of a new listing (all but kind and title).
#[derive(Debug, Args)]
pub struct ListingFields {
    /// The category (things: tools, garden ...; services: repair, care, lessons, help, services).
    #[arg(long, short = 'c', value_parser = category_parser())]
    pub category: String,
    /// A longer description.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// A tag (repeatable or comma-separated), e.g. drill.
    #[arg(long = "tag", short = 't', value_name = "TAG", value_delimiter = ',', value_parser = parse_tag)]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub terms: TermArgs,
    /// The community to publish in (default: troc.toml's `community`).
    #[arg(long, value_name = "SLUG", value_parser = parse_community)]
    pub community: Option<String>,
    /// Where: "LAT,LON" or a geohash, coarsened to 5 characters (default: troc.toml's `location`).
    #[arg(long, value_name = "LAT,LON|GEOHASH", value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<String>,
    /// Available from this day (YYYY-MM-DD, UTC) or Unix time.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub available_from: Option<u64>,
    /// Available until this day (YYYY-MM-DD, UTC) or Unix time.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub available_until: Option<u64>,
    /// How long the listing stays up, 1 to 90 days (default 30; renew it later).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u16).range(1..=90))]
    pub valid_for_days: Option<u16>,
}

/// The kind-specific terms of a listing.
#[derive(Debug, Args, Default)]
pub struct TermArgs {
    /// Lend and want: the longest loan, in days (1 to 365).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u16).range(1..=365))]
    pub max_loan_days: Option<u16>,
    /// Lend and share: a deposit, e.g. "20 EUR" or "12.50GBP".
    #[arg(long, value_name = "AMOUNT CUR", value_parser = parse_money)]
    pub deposit: Option<Money>,
    /// Conditions of use.
    #[arg(long, value_name = "TEXT")]
    pub conditions: Option<String>,
    /// When it is available, e.g. "weekends".
    #[arg(long, value_name = "TEXT")]
    pub availability: Option<String>,
    /// Swap and barter (required), want (optional): what is wanted, or offered, in return.
    #[arg(long, value_name = "TEXT")]
    pub in_return: Option<String>,
    /// Services: rough hours (1 to 1000).
    #[arg(long, value_name = "HOURS", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub hours: Option<u16>,
}

impl TermArgs {
    pub fn is_empty(&self) -> bool {
        self.max_loan_days.is_none()
            && self.deposit.is_none()
            && self.conditions.is_none()
            && self.availability.is_none()
            && self.in_return.is_none()
            && self.hours.is_none()
    }
}

/// An amount of money in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: u32,
    pub currency: [u8; 3],
}

#[derive(Debug, Subcommand)]
pub enum ListingCommand {
    /// Show a listing in full.
    #[command(after_help = "Examples:\n  troc listing show 3fa9c2\n  troc listing show 12D3KooW...:5e0c... --json")]
    Show(ListingRef),
    /// Edit one of your listings: only the fields given change (signs a new revision).
    #[command(after_help = "Examples:\n  troc listing edit 3fa9c2 --title \"Cordless drill, 18 V\"\n  \
                            troc listing edit 3fa9c2 --deposit \"30 EUR\" --tag drill,diy")]
    Edit(Box<EditArgs>),
    /// Renew one of your listings for another period.
    #[command(after_help = "Examples:\n  troc listing renew 3fa9c2\n  troc listing renew 3fa9c2 --valid-for-days 60")]
    Renew(RenewArgs),
    /// Withdraw one of your listings (signs and publishes a withdrawal).
    #[command(after_help = "Examples:\n  troc listing withdraw 3fa9c2 --reason \"lent for the summer\"")]
    Withdraw(WithdrawArgs),
}

#[derive(Debug, Args)]
pub struct ListingRef {
    /// The listing: its id, a unique prefix of at least 6 hex characters, or <peer id>:<key hex>.
    #[arg(value_name = "LISTING", value_parser = parse_listing_ref)]
    pub listing: String,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    #[command(flatten)]
    pub target: ListingRef,
    /// A new title.
    #[arg(long, value_parser = parse_title)]
    pub title: Option<String>,
    /// A new description.
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// A new category.
    #[arg(long, short = 'c', value_parser = category_parser())]
    pub category: Option<String>,
    /// New tags, replacing the old ones (repeatable or comma-separated).
    #[arg(long = "tag", short = 't', value_name = "TAG", value_delimiter = ',', value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[arg(long, conflicts_with = "tags")]
    pub no_tags: bool,
    #[command(flatten)]
    pub terms: TermArgs,
    /// A new community.
    #[arg(long, value_name = "SLUG", value_parser = parse_community)]
    pub community: Option<String>,
    /// A new coarse location.
    #[arg(long, value_name = "LAT,LON|GEOHASH", value_parser = parse_location, allow_hyphen_values = true)]
    pub location: Option<String>,
    /// Available from this day (YYYY-MM-DD, UTC) or Unix time.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub available_from: Option<u64>,
    /// Available until this day (YYYY-MM-DD, UTC) or Unix time.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub available_until: Option<u64>,
    /// Valid this many days from now (1 to 90).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u16).range(1..=90))]
    pub valid_for_days: Option<u16>,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub target: ListingRef,
    /// Valid this many days from now (1 to 90; default 30).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u16).range(1..=90))]
    pub valid_for_days: Option<u16>,
}

#[derive(Debug, Args)]
pub struct WithdrawArgs {
    #[command(flatten)]
    pub target: ListingRef,
    /// Why (shown to others).
    #[arg(long)]
    pub reason: Option<String>,
}

/// The filters shared by `search`, `alert add` and `watch`.
#[derive(Debug, Args, Default, Clone)]
pub struct Filters {
    /// Only these kinds (repeatable or comma-separated).
    #[arg(long = "kind", short = 'k', value_name = "KIND", value_delimiter = ',', value_parser = kind_parser())]
    pub kinds: Vec<String>,
    /// Only this category.
    #[arg(long, short = 'c', value_parser = category_parser())]
    pub category: Option<String>,
    /// Only listings with this tag.
    #[arg(long, value_parser = parse_tag)]
    pub tag: Option<String>,
    /// Only this community.
    #[arg(long, value_name = "SLUG", value_parser = parse_community)]
    pub community: Option<String>,
    /// Only this author (a PeerId).
    #[arg(long, value_name = "PEER_ID", value_parser = parse_peer_id)]
    pub author: Option<String>,
    /// Measure distances from here: "LAT,LON" or a geohash. Default with --within or --sort distance:
    /// troc.toml's location.
    #[arg(long, value_name = "LAT,LON|GEOHASH", value_parser = parse_location, allow_hyphen_values = true)]
    pub near: Option<String>,
    /// Only listings within this many km (of --near, or of the node's location).
    #[arg(long, value_name = "KM", value_parser = parse_km)]
    pub within: Option<f64>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to look for in titles, descriptions and tags.
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// Order of the results (default: relevance with TEXT, else newest; distance with --near alone).
    #[arg(long, value_parser = sort_parser())]
    pub sort: Option<troc_node::search::Sort>,
    /// How many results at most (1 to 200; default 20).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u16).range(1..=200))]
    pub limit: Option<u16>,
    /// Skip this many results (paging).
    #[arg(long)]
    pub offset: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Save a search: every new matching listing raises an `alert` event (see `troc watch`).
    #[command(after_help = "Examples:\n  troc alert add drills drill --kind lend,share\n  \
                            troc alert add free-stuff --kind give --near u09tv --within 3")]
    Add(AlertAddArgs),
    /// List the saved searches.
    #[command(after_help = "Examples:\n  troc alert list\n  troc alert list --json")]
    List,
    /// Remove a saved search.
    #[command(after_help = "Examples:\n  troc alert remove a1b2c3d4")]
    Remove(AlertRemoveArgs),
}

#[derive(Debug, Args)]
pub struct AlertAddArgs {
    /// A name for the alert.
    #[arg(value_name = "NAME", value_parser = parse_alert_name)]
    pub name: String,
    /// Words to look for.
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Debug, Args)]
pub struct AlertRemoveArgs {
    /// The alert's id (as `troc alert list` shows it).
    #[arg(value_name = "ID", value_parser = parse_alert_id)]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only these event types (repeatable or comma-separated; default all).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',', value_enum)]
    pub types: Vec<EventType>,
    /// Words the listing events must match.
    #[arg(long)]
    pub text: Option<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// One readable line per event instead of NDJSON (ignored with --json).
    #[arg(long)]
    pub human: bool,
}

/// The event types of `GET /v1/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EventType {
    ListingNew,
    ListingEdited,
    ListingWithdrawn,
    Alert,
    PeerConnected,
    PeerDisconnected,
    SyncProgress,
    SyncDone,
    Rejected,
    Lagged,
    DealProposal,
    DealAgreement,
    DealHandover,
    DealAcknowledgement,
    DealReturn,
    DealCompletion,
    DealCancellation,
    DealExtension,
    DealExtensionRequested,
    DealReviewCommitment,
    DealReview,
    DealReviewRevealed,
    DealDueSoon,
    DealOverdue,
    DealMessageRefused,
    DealRevocation,
    DealAnnulled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ListingNew => "listing_new",
            EventType::ListingEdited => "listing_edited",
            EventType::ListingWithdrawn => "listing_withdrawn",
            EventType::Alert => "alert",
            EventType::PeerConnected => "peer_connected",
            EventType::PeerDisconnected => "peer_disconnected",
            EventType::SyncProgress => "sync_progress",
            EventType::SyncDone => "sync_done",
            EventType::Rejected => "rejected",
            EventType::Lagged => "lagged",
            EventType::DealProposal => "deal_proposal",
            EventType::DealAgreement => "deal_agreement",
            EventType::DealHandover => "deal_handover",
            EventType::DealAcknowledgement => "deal_acknowledgement",
            EventType::DealReturn => "deal_return",
            EventType::DealCompletion => "deal_completion",
            EventType::DealCancellation => "deal_cancellation",
            EventType::DealExtension => "deal_extension",
            EventType::DealExtensionRequested => "deal_extension_requested",
            EventType::DealReviewCommitment => "deal_review_commitment",
            EventType::DealReview => "deal_review",
            EventType::DealReviewRevealed => "deal_review_revealed",
            EventType::DealDueSoon => "deal_due_soon",
            EventType::DealOverdue => "deal_overdue",
            EventType::DealMessageRefused => "deal_message_refused",
            EventType::DealRevocation => "deal_revocation",
            EventType::DealAnnulled => "deal_annulled",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the backup (created with mode 0600). Default: stdout.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Leave the secret key out (records only).
    #[arg(long)]
    pub no_identity: bool,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The backup file, as `troc export` wrote it.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write troc.1 and one page per command (troc-offer-add.1 ...) into this directory instead of
    /// printing troc.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

// ---- value parsers ----

fn kind_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(Kind::ALL.iter().map(|k| k.as_str()))
}

fn offer_kind_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(Kind::ALL.iter().filter(|k| k.is_offer()).map(|k| k.as_str()))
}

/// The search orders, as the node names them.
fn sort_parser() -> impl clap::builder::TypedValueParser<Value = troc_node::search::Sort> {
    use clap::builder::TypedValueParser;
    use troc_node::search::Sort;
    PossibleValuesParser::new(Sort::ALL.iter().map(|s| s.as_str())).try_map(|s| s.parse::<Sort>())
}

fn category_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(Category::ALL.iter().map(|c| c.as_str()))
}

/// A community slug, checked as the records check it.
pub fn parse_community(s: &str) -> Result<String, String> {
    troc_protocol::types::check_community(s).map(|()| s.to_owned()).map_err(|e| e.to_string())
}

/// A tag: a slug of at most 32 bytes.
pub fn parse_tag(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= troc_protocol::limits::MAX_TAG
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "a tag is a slug of at most {} characters: a-z, 0-9 and single inner dashes",
            troc_protocol::limits::MAX_TAG
        ))
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// A one-line text of 1 to `max` bytes without control characters.
fn one_line(s: &str, what: &str, max: usize) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > max {
        return Err(format!("the {what} is {} bytes long; at most {max}", s.len()));
    }
    if has_control(s) {
        return Err(format!("the {what} holds a control character"));
    }
    Ok(s.to_owned())
}

/// A display name: one line, 1 to 64 bytes.
pub fn parse_name(s: &str) -> Result<String, String> {
    one_line(s, "name", troc_protocol::limits::MAX_NAME)
}

/// A listing title: one line, 1 to 120 bytes.
pub fn parse_title(s: &str) -> Result<String, String> {
    one_line(s, "title", troc_protocol::limits::MAX_TITLE)
}

/// An alert name: one line, 1 to 80 bytes.
fn parse_alert_name(s: &str) -> Result<String, String> {
    one_line(s, "alert name", 80)
}

/// An alert id: 1 to 64 characters of a-z, 0-9, `-` and `_`.
fn parse_alert_id(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(s.to_owned())
    } else {
        Err("an alert id is letters and digits, as `troc alert list` shows it".to_owned())
    }
}

/// How many geohash characters troc stores for a person's or a listing's location (about 5 km).
pub const STORED_GEOHASH_LEN: usize = 5;

/// A coarse location: `LAT,LON` (decimal degrees) or a geohash; returned as a geohash of at most
/// [`STORED_GEOHASH_LEN`] characters.
pub fn parse_location(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Some((lat, lon)) = s.split_once(',') {
        let lat: f64 = lat.trim().parse().map_err(|_| format!("{lat:?} is not a latitude"))?;
        let lon: f64 = lon.trim().parse().map_err(|_| format!("{lon:?} is not a longitude"))?;
        if !(-90.0..=90.0).contains(&lat) || !lat.is_finite() {
            return Err(format!("latitude {lat} is outside -90..90"));
        }
        if !(-180.0..=180.0).contains(&lon) || !lon.is_finite() {
            return Err(format!("longitude {lon} is outside -180..180"));
        }
        return Ok(troc_protocol::geohash::encode(lat, lon, STORED_GEOHASH_LEN));
    }
    let lower = s.to_ascii_lowercase();
    if lower.is_empty() || lower.len() > 12 || !lower.bytes().all(|b| troc_protocol::geohash::ALPHABET.contains(&b)) {
        return Err("expected \"LAT,LON\" (e.g. 51.52,-0.098) or a geohash (alphabet 0-9 b-h j k m n p-z)".to_owned());
    }
    Ok(lower.chars().take(STORED_GEOHASH_LEN).collect())
}

fn parse_km(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(km) if km.is_finite() && km > 0.0 && km <= 20_000.0 => Ok(km),
        _ => Err("expected a distance in km, more than 0 and at most 20000".to_owned()),
    }
}

/// A person: a PeerId (`12D3KooW...`) or the public key as 64 hex digits; returned as a PeerId.
pub fn parse_peer_id(s: &str) -> Result<String, String> {
    s.parse::<troc_protocol::PublicKey>().map(|k| k.to_peer_id().to_base58()).map_err(|e| format!("{s:?}: {e}"))
}

/// A listing reference: a record id or a prefix of at least 6 hex characters, or the listing's
/// address `<peer id>:<32 hex key>` (`/` is accepted in place of `:`).
pub fn parse_listing_ref(s: &str) -> Result<String, String> {
    if let Some((peer, key)) = s.split_once(':').or_else(|| s.split_once('/')) {
        let peer = parse_peer_id(peer)?;
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the key after the : is 32 hex characters".to_owned());
        }
        return Ok(format!("{peer}:{}", key.to_ascii_lowercase()));
    }
    if (6..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("expected a listing id, a prefix of at least 6 hex characters, or <peer id>:<key hex>".to_owned())
    }
}

/// An invite as `troc invite` prints it: `troc1` then unpadded base64url.
pub fn parse_invite(s: &str) -> Result<String, String> {
    let s = s.trim();
    let Some(rest) = s.strip_prefix("troc1") else {
        return Err("an invite starts with troc1".to_owned());
    };
    if rest.is_empty()
        || rest.len() > 16 * 1024
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("an invite is troc1 followed by base64url characters".to_owned());
    }
    Ok(s.to_owned())
}

/// Money: `AMOUNT CUR` or `AMOUNTCUR` or `CUR AMOUNT`, the amount with at most 2 decimals.
pub fn parse_money(s: &str) -> Result<Money, String> {
    let bad = || "expected an amount and a currency, e.g. \"20 EUR\" or \"12.50GBP\"".to_owned();
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let (amount, cur) = if compact.len() > 3 && compact[..3].bytes().all(|b| b.is_ascii_alphabetic()) {
        (&compact[3..], &compact[..3])
    } else if compact.len() > 3 && compact.is_char_boundary(compact.len() - 3) {
        (&compact[..compact.len() - 3], &compact[compact.len() - 3..])
    } else {
        return Err(bad());
    };
    if !cur.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return Err(bad());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac_minor: u64 = match frac.len() {
        0 => 0,
        1 => u64::from(frac.as_bytes()[0] - b'0') * 10,
        _ => frac.parse().map_err(|_| bad())?,
    };
    let minor = whole.checked_mul(100).and_then(|w| w.checked_add(frac_minor)).ok_or_else(bad)?;
    let amount_minor = u32::try_from(minor).map_err(|_| "the amount is too large".to_owned())?;
    let up = cur.to_ascii_uppercase();
    let b = up.as_bytes();
    Ok(Money { amount_minor, currency: [b[0], b[1], b[2]] })
}

/// A day `YYYY-MM-DD` (midnight UTC) or Unix seconds.
pub fn parse_date(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| "the time is too large".to_owned());
    }
    let bad = || "expected a day YYYY-MM-DD or Unix seconds".to_owned();
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let days = crate::output::days_from_civil(y, m, d);
    u64::try_from(days * 86_400).map_err(|_| bad())
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_command_is_in_one_group() {
        let cmd = command();
        let mut grouped: Vec<&str> = GROUPS.iter().flat_map(|(_, names)| names.iter().copied()).collect();
        grouped.sort_unstable();
        let before = grouped.len();
        grouped.dedup();
        assert_eq!(before, grouped.len(), "a command is in two groups");
        for sub in cmd.get_subcommands() {
            assert!(grouped.contains(&sub.get_name()), "{} is in no group", sub.get_name());
        }
        for name in grouped {
            assert!(name == "help" || cmd.find_subcommand(name).is_some(), "{name} is not a command");
        }
    }

    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains("Examples:"), "`{path}` has no examples");
                walk(sub, &path);
            }
        }
        walk(&command(), "troc");
    }

    #[test]
    fn locations_are_coarsened() {
        assert_eq!(parse_location("51.5202,-0.0979").unwrap().len(), 5);
        assert_eq!(parse_location("U09TVWQ").unwrap(), "u09tv");
        assert_eq!(parse_location("u0").unwrap(), "u0");
        for bad in ["", "u09a", "91,0", "0,181", "x,y", "nan,0", "0123456789bcd"] {
            assert!(parse_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_and_dates() {
        assert_eq!(parse_money("20 EUR").unwrap(), Money { amount_minor: 2000, currency: *b"EUR" });
        assert_eq!(parse_money("12.5gbp").unwrap(), Money { amount_minor: 1250, currency: *b"GBP" });
        assert_eq!(parse_money("EUR 0.05").unwrap(), Money { amount_minor: 5, currency: *b"EUR" });
        for bad in ["", "20", "EUR", "1.234 EUR", "-5 EUR", "20 E1R", "99999999999 EUR", "€20"] {
            assert!(parse_money(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_date("1970-01-02").unwrap(), 86_400);
        assert_eq!(parse_date("2024-02-29").unwrap(), 1_709_164_800);
        assert_eq!(parse_date("1763856000").unwrap(), 1_763_856_000);
        for bad in ["2023-02-29", "2024-13-01", "yesterday", "2024-1", ""] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listing_refs_and_invites() {
        assert_eq!(parse_listing_ref("ABCDEF").unwrap(), "abcdef");
        assert!(parse_listing_ref("abcde").is_err());
        assert!(parse_listing_ref("xyzxyz").is_err());
        let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        let address = format!("{peer}:{}", "ab".repeat(16));
        assert_eq!(parse_listing_ref(&address).unwrap(), address);
        assert_eq!(parse_listing_ref(&format!("{peer}/{}", "AB".repeat(16))).unwrap(), address);
        assert!(parse_listing_ref(&format!("{peer}:abcd")).is_err());
        assert!(parse_invite("troc1eyJ2IjoxfQ").is_ok());
        assert!(parse_invite("troc1").is_err());
        assert!(parse_invite("hello").is_err());
        assert!(parse_invite("troc1a+b").is_err());
        assert!(parse_tag("diy").is_ok());
        assert!(parse_tag("Diy").is_err());
        assert!(parse_name("Alice").is_ok());
        assert!(parse_name(" ").is_err());
        assert!(parse_name("a\u{1b}[31m").is_err());
    }
}

/// A deal: the id of any of its records, or a prefix of at least 8 hex digits.
#[derive(Debug, Args)]
pub struct DealRef {
    /// The deal (its proposal's or agreement's id, or a prefix of at least 8 hex digits).
    #[arg(value_name = "DEAL", value_parser = parse_deal_ref)]
    pub deal: String,
}

/// A note on a deal step.
#[derive(Debug, Args)]
pub struct DealNoteArgs {
    #[command(flatten)]
    pub target: DealRef,
    /// A note for the other party (public with the record, except on a proposal's).
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DealCommand {
    /// Propose a deal about a listing to its author (sent directly, never public).
    #[command(
        after_help = "Examples:\n  troc deal propose 3fa9c2 --days 3 --message \"Could I borrow it Saturday?\"\n  \
                            troc deal propose 7d01aa --in-return \"My ladder\""
    )]
    Propose(ProposeArgs),
    /// Accept a proposal made to you: both nodes sign the same agreement.
    #[command(after_help = "Examples:\n  troc deal accept 9c1e77aa")]
    Accept(DealRef),
    /// Decline a proposal made to you (or withdraw yours with --withdraw).
    #[command(after_help = "Examples:\n  troc deal decline 9c1e77aa --note \"Sorry, it is lent out\"")]
    Decline(DeclineArgs),
    /// Counter a proposal made to you with other dates or terms.
    #[command(after_help = "Examples:\n  troc deal counter 9c1e77aa --days 2 --message \"Two days?\"")]
    Counter(CounterArgs),
    /// Sign the handover (you gave the thing, or did the service).
    #[command(after_help = "Examples:\n  troc deal handover 9c1e77aa\n  troc deal handover 9c1e77aa --ack")]
    Handover(HandoverArgs),
    /// Sign the return (you gave the thing back); `--ack` acknowledges the other party's.
    #[command(
        name = "return",
        after_help = "Examples:\n  troc deal return 9c1e77aa\n  troc deal return 9c1e77aa --ack"
    )]
    Return(HandoverArgs),
    /// Sign the completion of the deal.
    #[command(after_help = "Examples:\n  troc deal complete 9c1e77aa")]
    Complete(DealNoteArgs),
    /// Cancel an agreement: cancelled, no_show or dispute.
    #[command(after_help = "Examples:\n  troc deal cancel 9c1e77aa --reason no_show --note \"Waited an hour\"")]
    Cancel(CancelArgs),
    /// Ask to move a loan's due date, or accept (--accept REQUEST) or decline (--decline REQUEST) such a request.
    #[command(
        after_help = "Examples:\n  troc deal extend 9c1e77aa --days 3\n  troc deal extend --accept 4be0c1...\n  \
                      troc deal extend --decline 4be0c1..."
    )]
    Extend(ExtendArgs),
    /// List your deals.
    #[command(after_help = "Examples:\n  troc deal list\n  troc deal list --json")]
    List,
    /// Show a deal: its state, whose move it is, its records.
    #[command(after_help = "Examples:\n  troc deal show 9c1e77aa")]
    Show(DealRef),
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub listing: ListingRef,
    /// Start in this many days (default: now).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u16).range(0..=365))]
    pub in_days: Option<u16>,
    /// For how many days (lend, share; default the listing's longest loan, else 7).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=365))]
    pub days: Option<u16>,
    /// A private message for the listing's author.
    #[arg(long, short = 'm', default_value = "")]
    pub message: String,
    /// What you offer in return (swap, barter).
    #[arg(long, default_value = "")]
    pub in_return: String,
}

#[derive(Debug, Args)]
pub struct DeclineArgs {
    #[command(flatten)]
    pub target: DealRef,
    /// Withdraw your own proposal instead.
    #[arg(long)]
    pub withdraw: bool,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct CounterArgs {
    #[command(flatten)]
    pub target: DealRef,
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=365))]
    pub days: Option<u16>,
    #[arg(long, short = 'm')]
    pub message: Option<String>,
    #[arg(long)]
    pub in_return: Option<String>,
}

#[derive(Debug, Args)]
pub struct HandoverArgs {
    #[command(flatten)]
    pub target: DealRef,
    /// Acknowledge the other party's handover (or return) instead of signing your own.
    #[arg(long)]
    pub ack: bool,
    /// With --ack: the condition it came in.
    #[arg(long, value_parser = ["as_expected", "damaged", "incomplete"], default_value = "as_expected")]
    pub condition: String,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub target: DealRef,
    #[arg(long, value_parser = ["cancelled", "no_show", "dispute"], default_value = "cancelled")]
    pub reason: String,
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// The deal (to ask for an extension).
    #[arg(value_name = "DEAL", value_parser = parse_deal_ref, required_unless_present_any = ["accept", "decline"])]
    pub deal: Option<String>,
    /// Days added to the due date.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=365), required_unless_present_any = ["accept", "decline"])]
    pub days: Option<u16>,
    /// Accept the extension request with this id (see `troc inbox`).
    #[arg(long, value_name = "REQUEST", conflicts_with_all = ["deal", "days", "decline"], value_parser = parse_record_id)]
    pub accept: Option<String>,
    /// Decline the extension request with this id (see `troc inbox`): it is dropped, nothing is
    /// published, the due date stays.
    #[arg(long, value_name = "REQUEST", conflicts_with_all = ["deal", "days"], value_parser = parse_record_id)]
    pub decline: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub target: DealRef,
    /// The overall rating.
    #[arg(value_name = "RATING", value_parser = ["positive", "neutral", "negative"])]
    pub rating: String,
    /// A few words.
    #[arg(long, default_value = "")]
    pub text: String,
}

#[derive(Debug, Args)]
pub struct PersonArg {
    /// The person's id (12D3KooW...).
    #[arg(value_name = "PEER_ID", value_parser = parse_person)]
    pub person: String,
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    /// The person's id (12D3KooW...).
    #[arg(value_name = "PEER_ID", value_parser = parse_person, required_unless_present = "list")]
    pub person: Option<String>,
    /// List the people you blocked.
    #[arg(long, conflicts_with = "person")]
    pub list: bool,
}

fn parse_deal_ref(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if lower.len() < 8 || lower.len() > 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a deal id: 64 hex digits, or a prefix of at least 8".into());
    }
    Ok(lower)
}

fn parse_record_id(s: &str) -> Result<String, String> {
    s.parse::<troc_protocol::RecordId>().map(|id| id.to_string()).map_err(|_| "a record id: 64 hex digits".into())
}

fn parse_person(s: &str) -> Result<String, String> {
    s.parse::<troc_protocol::PublicKey>().map(|k| k.to_string()).map_err(|e| format!("not a peer id: {e}"))
}

/// `troc rep`.
#[derive(Debug, Args)]
pub struct RepArgs {
    /// The person's id (12D3KooW...).
    #[arg(value_name = "PEER_ID", value_parser = parse_person, required_unless_present = "top")]
    pub person: Option<String>,
    /// Show the strongest paths of trust from you to them, hop by hop.
    #[arg(long, conflicts_with = "top")]
    pub explain: bool,
    /// List the N best-ranked people in your view instead (1 to 200).
    #[arg(long, value_name = "N", conflicts_with = "person", value_parser = clap::value_parser!(u16).range(1..=200))]
    pub top: Option<u16>,
}

/// `troc vouch PEER --context TEXT [--days N]`, or `troc vouch list`.
#[derive(Debug, Args)]
pub struct VouchArgs {
    #[command(subcommand)]
    pub command: Option<VouchCommand>,
    /// The person's id (12D3KooW...).
    #[arg(value_name = "PEER_ID", value_parser = parse_person, required = true)]
    pub person: Option<String>,
    /// How you know them, in a line (1 to 200 characters; public with the vouch).
    #[arg(long, value_parser = parse_context, required = true)]
    pub context: Option<String>,
    /// How long the vouch runs, in days (1 to 730; default 365).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=730))]
    pub days: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum VouchCommand {
    /// List the live vouches you gave and received.
    #[command(after_help = "Examples:\n  troc vouch list\n  troc vouch list --json")]
    List,
}

/// `troc revoke RECORD_ID`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The record's id (64 hex digits): one of yours.
    #[arg(value_name = "RECORD_ID", value_parser = parse_record_id)]
    pub record: String,
    /// Why (public with the revocation, at most 500 characters).
    #[arg(long, default_value = "")]
    pub reason: String,
}

fn parse_context(s: &str) -> Result<String, String> {
    one_line(s, "context", troc_protocol::limits::MAX_VOUCH_CONTEXT)
}
