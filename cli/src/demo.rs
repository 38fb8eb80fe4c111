//! `troc demo`: a small neighbourhood on this machine, to see troc work before inviting anyone.
//!
//! It starts several real nodes in this process (loopback TCP, no mDNS, fast timers), each with its
//! own home under `<home>/demo/<name>`, its own identity and its own local API, so every other
//! command works against any of them (`TROC_HOME=<home>/demo/bruno troc search drill`). Generated
//! people publish their profile and a mix of offers and wants through their node's API; the demo
//! shows how long each listing takes to reach every other node, checks that every node ends with
//! every listing, asks each neighbour's node to find what they want, then prints the commands to try
//! and keeps running (reporting listings published from other terminals) until Ctrl-C or SIGTERM,
//! when every API and node is shut down cleanly.
//!
//! Nothing outside `<home>/demo/` is touched. The previous demo's data there is wiped at start unless
//! `--keep` is given; a demo still running from that directory is detected and left alone.
//!
//! Progress goes to stdout as readable lines, or with `--json` as NDJSON events (one object per
//! line, `"event"` naming it: `node_started`, `connected`, `published`, `kept`, `found`, `summary`,
//! `ready`, `live_published`, `shutting_down`, `stopped`). Synchronisation is on node events (and a
//! store check as a fallback), always with a deadline, never a fixed sleep.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use troc_node::api::{ApiConfig, ApiInfo, ApiServer, LocalProfile};
use troc_node::config::Timing;
use troc_node::events::NodeEvent;
use troc_node::metrics::Source;
use troc_node::{NodeConfig, NodeHandle, keystore};
use troc_protocol::{Listing, RecordId, RecordType, geohash};

use crate::client::Api;
use crate::exit::CliError;

/// `troc demo`'s options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How many neighbours (nodes) to start, 2 to 20.
    #[arg(long, short = 'n', default_value_t = 5, value_parser = clap::value_parser!(u8).range(2..=20))]
    pub nodes: u8,
    /// The community the neighbours live in.
    #[arg(long, value_name = "SLUG", default_value = "demo-village", value_parser = crate::args::parse_community)]
    pub community: String,
    /// Keep the previous demo's identities and listings instead of starting afresh.
    #[arg(long)]
    pub keep: bool,
    /// How long each step may take (connecting, a listing reaching every node), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Stop everything as soon as the neighbourhood is set up and checked (for scripts and tests).
    #[arg(long)]
    pub exit_after_setup: bool,
}

/// The directory under the home that holds the demo's node homes.
pub const DEMO_DIR: &str = "demo";

/// The demo's town centre (a market square), and how far from it people live.
const CENTRE: (f64, f64) = (45.7578, 4.8320);
const MAX_RADIUS_KM: f64 = 2.5;

const NAMES: [&str; 20] = [
    "Alice", "Bruno", "Chloe", "Dario", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Leo", "Maya",
    "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tess",
];

/// One thing of the catalogue: an offer, the matching want someone else publishes, and the word that
/// finds the offer.
struct Item {
    offer: Value,
    want: Value,
    word: &'static str,
}

/// A listing as the table gives it: kind, category, title, description, tags (comma-separated), and
/// terms as JSON (`docs/api.md`, `POST /v1/listings`).
type Row = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str);

/// Offers and their matching wants, with the word that finds the offer.
#[rustfmt::skip]
const ITEMS: [(Row, Row, &str); 20] = [
    (("lend", "tools", "Cordless drill", "18 V, two batteries and a box of bits.", "drill,diy",
      r#"{"max_loan_days": 7, "deposit": {"amount_minor": 2000, "currency": "EUR"}}"#),
     ("want", "tools", "Drill for a weekend", "Putting up shelves; back on Monday.", "drill", r#"{"max_loan_days": 3}"#),
     "drill"),
    (("lend", "tools", "Aluminium ladder, 3 m", "Light, folds in two.", "ladder", r#"{"max_loan_days": 3}"#),
     ("want", "tools", "Ladder to clean the gutters", "One afternoon is enough.", "ladder", r#"{"max_loan_days": 1}"#),
     "ladder"),
    (("share", "garden", "Vegetable garden plot", "Half my garden is free: sun all afternoon, water butt included.",
      "garden,vegetables", r#"{"conditions": "No pesticides, please."}"#),
     ("want", "garden", "A bit of garden for tomatoes", "I have seeds and time, not the soil.", "garden", "{}"),
     "garden"),
    (("swap", "books", "Crime novels, a box of 20", "Read once, good condition.", "books,novels",
      r#"{"in_return": "science fiction or travel books"}"#),
     ("want", "books", "Novels for a long holiday", "Anything gripping.", "books", r#"{"in_return": "a box of cookbooks"}"#),
     "novels"),
    (("barter", "help", "Lawn mowing", "I mow your lawn with my own mower.", "lawn,garden",
      r#"{"hours": 2, "in_return": "an evening of babysitting"}"#),
     ("want", "help", "Someone to mow the lawn", "A small lawn behind the house.", "lawn",
      r#"{"in_return": "babysitting on a Friday evening"}"#),
     "lawn"),
    (("give", "household", "Sofa, three seats", "Grey, a bit worn, comfortable; you collect.", "sofa,furniture", "{}"),
     ("want", "household", "Sofa for a student flat", "Any colour.", "sofa", "{}"),
     "sofa"),
    (("lend", "kitchen", "Pasta machine", "Hand-cranked, with the ravioli attachment.", "pasta", r#"{"max_loan_days": 14}"#),
     ("want", "kitchen", "Pasta machine for a birthday dinner", "Just for a weekend.", "pasta", r#"{"max_loan_days": 2}"#),
     "pasta"),
    (("share", "transport", "Cargo bike", "Electric assist; for shopping runs and small moves.", "cargo-bike,bike",
      r#"{"availability": "weekdays", "deposit": {"amount_minor": 5000, "currency": "EUR"}}"#),
     ("want", "transport", "Cargo bike for a small move", "A few boxes across town.", "cargo-bike", r#"{"max_loan_days": 1}"#),
     "cargo"),
    (("barter", "lessons", "Guitar lessons for beginners", "Chords, rhythm and a first song.", "guitar,music",
      r#"{"hours": 1, "in_return": "help with my tax forms"}"#),
     ("want", "lessons", "Guitar lessons", "A complete beginner, patient teacher wanted.", "guitar", "{}"),
     "guitar"),
    (("give", "garden", "Apple tree seedlings", "Five of them, about 40 cm.", "seedlings,trees", "{}"),
     ("want", "garden", "Fruit tree seedlings", "For a new orchard corner.", "seedlings", "{}"),
     "seedlings"),
    (("lend", "camping", "Four-person tent", "Up in ten minutes, dry and clean.", "tent,camping",
      r#"{"max_loan_days": 10, "deposit": {"amount_minor": 3000, "currency": "EUR"}}"#),
     ("want", "camping", "Tent for a festival", "Three nights in July.", "tent", r#"{"max_loan_days": 4}"#),
     "tent"),
    (("swap", "kids", "Kids bike, 16 inch", "Red, with stabilisers.", "kids-bike", r#"{"in_return": "a 20 inch bike"}"#),
     ("want", "kids", "Kids bike for a 5-year-old", "Our daughter outgrew her balance bike.", "kids-bike", "{}"),
     "kids"),
    (("lend", "electronics", "Video projector", "HDMI, with a screen on a stand.", "projector",
      r#"{"max_loan_days": 3, "deposit": {"amount_minor": 4000, "currency": "EUR"}}"#),
     ("want", "electronics", "Projector for a film night", "Saturday, in the courtyard.", "projector", r#"{"max_loan_days": 1}"#),
     "projector"),
    (("give", "clothing", "Winter coats, children's sizes", "Three coats, ages 6 to 9.", "coats,kids", "{}"),
     ("want", "clothing", "Winter coats for two children", "Ages 7 and 8.", "coats", "{}"),
     "coats"),
    (("barter", "repair", "Bike repair", "Punctures, brakes, gears.", "bike,repair",
      r#"{"hours": 2, "in_return": "fresh eggs or jam"}"#),
     ("want", "repair", "Bike repair: a puncture and squeaky brakes", "Before Monday if possible.", "bike", "{}"),
     "repair"),
    (("lend", "music", "Digital piano", "88 weighted keys, with headphones.", "piano", r#"{"max_loan_days": 30}"#),
     ("want", "music", "Piano to practise on", "A few weeks before an exam.", "piano", r#"{"max_loan_days": 21}"#),
     "piano"),
    (("share", "tools", "Workshop with a workbench", "Vice, clamps and a pillar drill.", "workbench,workshop",
      r#"{"availability": "Saturday mornings"}"#),
     ("want", "tools", "A workbench for an afternoon", "To build a bird box with the kids.", "workbench", "{}"),
     "workbench"),
    (("give", "care", "Dog walking, weekday mornings", "I walk mine anyway; yours is welcome.", "dog", "{}"),
     ("want", "care", "Someone to walk my dog", "A friendly labrador, mornings.", "dog", "{}"),
     "dog"),
    (("lend", "sports", "Kayak with paddles", "Two seats, life jackets included.", "kayak",
      r#"{"max_loan_days": 2, "deposit": {"amount_minor": 6000, "currency": "EUR"}}"#),
     ("want", "sports", "Kayak for a weekend on the river", "Experienced paddlers.", "kayak", r#"{"max_loan_days": 2}"#),
     "kayak"),
    (("give", "books", "Children's picture books", "A shelf of them, ages 2 to 5.", "books,kids", "{}"),
     ("want", "books", "Picture books for a toddler", "Bedtime reading.", "books", "{}"),
     "picture"),
];

/// The request body of a table row.
fn body((kind, category, title, description, tags, terms): Row) -> Value {
    let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
    let terms: Value = serde_json::from_str(terms).unwrap_or_else(|_| json!({}));
    json!({ "kind": kind, "category": category, "title": title, "description": description, "tags": tags, "terms": terms })
}

/// The catalogue: person `i` offers item `i` and wants item `i + 1` (mod the number of people), so
/// every want has an offer somewhere else in the neighbourhood.
fn catalogue() -> Vec<Item> {
    ITEMS.iter().map(|&(offer, want, word)| Item { offer: body(offer), want: body(want), word }).collect()
}

/// A generated neighbour.
#[derive(Debug, Clone)]
struct Person {
    name: &'static str,
    slug: String,
    location: String,
}

/// The `i`-th person: a name and a coarse location (5 geohash characters) around the town centre.
fn person(i: usize) -> Person {
    let name = NAMES[i % NAMES.len()];
    // Spread people on a golden-angle spiral, within MAX_RADIUS_KM of the centre.
    let angle = (i as f64) * 137.508_f64.to_radians();
    let radius = MAX_RADIUS_KM * ((i as f64 + 0.5) / NAMES.len() as f64).sqrt();
    let lat = CENTRE.0 + radius / 111.0 * angle.sin();
    let lon = CENTRE.1 + radius / (111.0 * CENTRE.0.to_radians().cos()) * angle.cos();
    Person { name, slug: name.to_ascii_lowercase(), location: geohash::encode(lat, lon, 5) }
}

/// A running neighbour.
struct Neighbour {
    person: Person,
    home: PathBuf,
    node: NodeHandle,
    api: Option<ApiServer>,
    api_addr: SocketAddr,
}

/// Which node stored which record, and when: filled from every node's events.
#[derive(Default)]
struct Seen {
    at: HashMap<RecordId, HashMap<usize, Instant>>,
}

/// A listing stored by its author's node: the node's index, the id, when, and whether it is an edit.
type LocalListing = (usize, RecordId, Instant, bool);

/// Listens to every node's events and wakes waiters when anything changes.
struct Tracker {
    seen: Mutex<Seen>,
    changed: watch::Sender<u64>,
    /// While the demo runs for the user: listings published locally on a node.
    live: Mutex<Option<mpsc::Sender<LocalListing>>>,
}

impl Tracker {
    fn new() -> Arc<Tracker> {
        Arc::new(Tracker { seen: Mutex::new(Seen::default()), changed: watch::channel(0).0, live: Mutex::new(None) })
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Follows one node's events until its channel closes.
    fn follow(self: &Arc<Self>, index: usize, mut events: broadcast::Receiver<NodeEvent>) {
        let tracker = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Stored { id, record_type, source, replaced, .. }) => {
                        let now = Instant::now();
                        if let Ok(mut seen) = tracker.seen.lock() {
                            seen.at.entry(id).or_default().entry(index).or_insert(now);
                        }
                        if record_type == RecordType::Listing
                            && source == Source::Local
                            && let Ok(live) = tracker.live.lock()
                            && let Some(tx) = live.as_ref()
                        {
                            let _ = tx.try_send((index, id, now, replaced.is_some()));
                        }
                        tracker.bump();
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => tracker.bump(),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// When each node got `id` (None where it has not yet). The store is asked too, in case an event
    /// was missed; a record found only there counts as arrived now.
    fn arrivals(&self, id: &RecordId, nodes: &[NodeHandle]) -> Vec<Option<Instant>> {
        let known: HashMap<usize, Instant> =
            self.seen.lock().ok().and_then(|s| s.at.get(id).cloned()).unwrap_or_default();
        nodes
            .iter()
            .enumerate()
            .map(|(i, node)| match known.get(&i) {
                Some(at) => Some(*at),
                None if node.store().contains(id).unwrap_or(false) => Some(Instant::now()),
                None => None,
            })
            .collect()
    }

    /// Waits until every node has `id`, or `deadline`. Returns the arrivals at that point.
    async fn wait_everywhere(&self, id: &RecordId, nodes: &[NodeHandle], deadline: Instant) -> Vec<Option<Instant>> {
        loop {
            let mut changed = self.changed.subscribe();
            let arrivals = self.arrivals(id, nodes);
            if arrivals.iter().all(Option::is_some) || Instant::now() >= deadline {
                return arrivals;
            }
            // Woken by the next event; the bounded wait re-checks the stores if events were missed.
            let _ =
                tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(500)), changed.changed())
                    .await;
        }
    }
}

/// Prints progress: readable lines, or one JSON object per line.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn event(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            outln!("{value}");
        } else {
            outln!("{}", text());
        }
    }
}

fn short_id(node: &NodeHandle) -> String {
    node.identity().public().short()
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{} ms", d.as_millis()) } else { format!("{:.1} s", d.as_secs_f64()) }
}

/// A path as a shell word (quoted if it needs to be).
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `troc demo`.
pub fn run(home: &Path, args: &DemoArgs, json: bool) -> anyhow::Result<()> {
    let root = home.join(DEMO_DIR);
    prepare(&root, args.keep)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("could not start the runtime")?;
    runtime.block_on(async move {
        let out = Out { json };
        let tracker = Tracker::new();
        let mut hood: Vec<Neighbour> = Vec::new();
        let shutdown = crate::cmd::shutdown_signal();
        tokio::pin!(shutdown);
        let outcome = tokio::select! {
            r = setup(&root, args, out, &tracker, &mut hood) => Some(r),
            _ = &mut shutdown => None,
        };
        let result = match outcome {
            Some(Ok(())) if !args.exit_after_setup => {
                live(out, &tracker, &hood, &mut shutdown).await;
                Ok(())
            }
            Some(r) => r,
            None => Ok(()),
        };
        out.event(json!({ "event": "shutting_down" }), || "stopping the neighbourhood".to_owned());
        let mut stopped = Ok(());
        for n in &mut hood {
            if let Some(api) = n.api.take() {
                api.shutdown().await;
            }
        }
        for n in &hood {
            if let Err(e) = n.node.shutdown().await {
                stopped =
                    Err(anyhow::Error::new(e).context(format!("{}'s node did not shut down cleanly", n.person.name)));
            }
        }
        out.event(json!({ "event": "stopped", "nodes": hood.len() }), || {
            format!("stopped {} nodes; their data stays in {}", hood.len(), root.display())
        });
        result.and(stopped)
    })
}

/// Makes `root` ready: refuses if a demo still runs there; wipes it unless `keep`.
fn prepare(root: &Path, keep: bool) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(root) {
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
            bail!("{} is not a directory that troc demo made; move it away first", root.display())
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", root.display())),
    }
    let entries = std::fs::read_dir(root).with_context(|| format!("could not read {}", root.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("could not read {}", root.display()))?.path();
        if let Ok(Some(info)) = ApiInfo::read(&path)
            && TcpStream::connect_timeout(&info.address, Duration::from_millis(300)).is_ok()
        {
            return Err(CliError::Usage(format!(
                "a demo is already running from {} (pid {}, API {}): stop it first, or explore it with \
                 `troc --home {} search drill`",
                root.display(),
                info.pid,
                info.address,
                shell_word(&path)
            ))
            .into());
        }
    }
    if !keep {
        std::fs::remove_dir_all(root)
            .with_context(|| format!("could not remove the previous demo in {}", root.display()))?;
    }
    Ok(())
}

/// Starts the neighbours, connects them, publishes, and checks that every node has every listing.
async fn setup(
    root: &Path,
    args: &DemoArgs,
    out: Out,
    tracker: &Arc<Tracker>,
    hood: &mut Vec<Neighbour>,
) -> anyhow::Result<()> {
    let n = usize::from(args.nodes);
    // Each step (connecting, one listing reaching every node, the final check) gets this long.
    let step = Duration::from_secs(args.timeout);
    let community = args.community.as_str();
    out.event(json!({ "event": "starting", "nodes": n, "community": community, "root": root }), || {
        format!("troc demo: starting {n} neighbours in the community {community:?} (homes under {})", root.display())
    });
    keystore::create_home(root).with_context(|| format!("could not create {}", root.display()))?;
    let readme = root.join("README");
    if !readme.exists() {
        std::fs::write(
            &readme,
            "Made by `troc demo`: one node home per neighbour. `troc demo` wipes this directory unless --keep.\n",
        )
        .with_context(|| format!("could not write {}", readme.display()))?;
    }
    let started = Instant::now();
    for i in 0..n {
        let person = person(i);
        let home = root.join(&person.slug);
        let (identity, _) = keystore::load_or_create(&home)
            .with_context(|| format!("could not create {}'s identity in {}", person.name, home.display()))?;
        if !crate::config::config_path(&home).exists() {
            let text = crate::config::render(Some(person.name), Some(community), Some(&person.location));
            crate::config::create(&home, &text)?;
        }
        let mut config = NodeConfig::for_test(home.clone(), identity);
        config.timing = demo_timing();
        config.communities = vec![community.to_owned()];
        if let Some(first) = hood.first() {
            config.bootstrap = first.node.dial_addrs().await.context("could not read the first node's addresses")?;
        }
        let (node, events) =
            troc_node::Node::spawn(config).await.with_context(|| format!("could not start {}'s node", person.name))?;
        tracker.follow(i, events);
        let profile = LocalProfile {
            name: person.name.to_owned(),
            community: Some(community.to_owned()),
            location: Some(person.location.clone()),
        };
        let api_config = ApiConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_public: false,
            home: home.clone(),
            profile,
            connections: Default::default(),
        };
        let api = match troc_node::api::serve(node.clone(), api_config).await {
            Ok(api) => api,
            Err(e) => {
                let _ = node.shutdown().await;
                return Err(anyhow::Error::new(e).context(format!("could not start {}'s API", person.name)));
            }
        };
        let api_addr = api.local_addr();
        let short = short_id(&node);
        out.event(
            json!({ "event": "node_started", "name": person.name, "peer_id": node.peer_id().to_base58(), "short": short,
                    "location": person.location, "home": home, "api": api_addr.to_string() }),
            || {
                format!(
                    "  {:<6} {short}  at {}  api http://{api_addr}  home {}",
                    person.name,
                    person.location,
                    home.display()
                )
            },
        );
        hood.push(Neighbour { person, home, node, api: Some(api), api_addr });
    }

    // Connections: everyone bootstraps from the first neighbour.
    let handles: Vec<NodeHandle> = hood.iter().map(|h| h.node.clone()).collect();
    let links = wait_connected(tracker, &handles, Instant::now() + step).await?;
    out.event(
        json!({ "event": "connected", "nodes": n, "links": links, "elapsed_ms": started.elapsed().as_millis() as u64 }),
        || {
            format!(
                "connected: {n} nodes, {links} links, everyone reachable through {} ({})",
                hood[0].person.name,
                secs(started.elapsed())
            )
        },
    );

    // Listings: an offer each, then a want each, one after the other, each followed to every node.
    let apis: Vec<Api> = hood.iter().map(|h| Api::open(&h.home)).collect::<anyhow::Result<_>>()?;
    let items = catalogue();
    let mut expected: Vec<RecordId> = Vec::new();
    let mut kept = 0usize;
    let mut to_publish: Vec<(usize, &Value)> = Vec::new();
    for (i, api) in apis.iter().enumerate() {
        let mine =
            api.get(&["v1", "mine"], &Vec::new()).await.with_context(|| format!("{}'s node", hood[i].person.name))?;
        let ids = ids_of(&mine);
        if ids.is_empty() {
            to_publish.push((i, &items[i % items.len()].offer));
        } else {
            kept += ids.len();
            expected.extend(ids);
        }
    }
    for i in 0..n {
        if to_publish.iter().any(|(j, _)| *j == i) {
            to_publish.push((i, &items[(i + 1) % n % items.len()].want));
        }
    }
    if kept > 0 {
        out.event(json!({ "event": "kept", "listings": kept }), || {
            format!("kept {kept} listings from the previous demo (--keep); catch-up brings them to every node")
        });
    }
    if !to_publish.is_empty() {
        out.event(json!({ "event": "publishing", "listings": to_publish.len() }), || {
            format!("publishing {} offers and wants (each through its author's API):", to_publish.len())
        });
    }
    for (i, body) in to_publish {
        let t0 = Instant::now();
        let who = hood[i].person.name;
        let created = apis[i]
            .post(&["v1", "listings"], body)
            .await
            .with_context(|| format!("{who} could not publish {}", body["title"]))?;
        let id: RecordId = created["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("the API answered a listing without an id: {created}"))?;
        expected.push(id);
        let arrivals = tracker.wait_everywhere(&id, &handles, Instant::now() + step).await;
        let reached = arrivals.iter().enumerate().filter(|(j, a)| *j != i && a.is_some()).count();
        let slowest = arrivals.iter().flatten().map(|a| a.saturating_duration_since(t0)).max().unwrap_or_default();
        let (kind, title) = (body["kind"].as_str().unwrap_or(""), body["title"].as_str().unwrap_or(""));
        out.event(
            json!({ "event": "published", "name": who, "id": id.to_string(), "kind": kind, "title": title,
                    "reached": reached, "of": n - 1, "elapsed_ms": slowest.as_millis() as u64 }),
            || {
                let verdict = if reached == n - 1 {
                    format!("reached all {} others in {}", n - 1, secs(slowest))
                } else {
                    format!("reached {reached} of {} others so far", n - 1)
                };
                format!("  {who:<6} {kind:<6} {title:<44} {verdict}")
            },
        );
    }

    // Every node has every listing (kept ones come by catch-up).
    let mut missing: Vec<(usize, usize)> = Vec::new();
    let deadline = Instant::now() + step;
    for id in &expected {
        tracker.wait_everywhere(id, &handles, deadline).await;
    }
    for (i, node) in handles.iter().enumerate() {
        let lacking = expected.iter().filter(|id| !node.store().contains(id).unwrap_or(false)).count();
        if lacking > 0 {
            missing.push((i, lacking));
        }
    }
    let m = expected.len();
    let complete = missing.is_empty();

    // Search: each neighbour's own node finds an offer for what they want.
    let mut found = 0usize;
    for (i, api) in apis.iter().enumerate() {
        let item = &items[(i + 1) % n % items.len()];
        let q = vec![
            ("text", item.word.to_owned()),
            ("kind", "lend,share,swap,barter,give".to_owned()),
            ("community", community.to_owned()),
            ("limit", "1".to_owned()),
        ];
        let res = api
            .get(&["v1", "search"], &q)
            .await
            .with_context(|| format!("{}'s node could not search", hood[i].person.name))?;
        if let Some(hit) = res["listings"].as_array().and_then(|l| l.first()) {
            found += 1;
            let by = hit["author"]["name"].as_str().unwrap_or("someone").to_owned();
            let (kind, title, distance) = (
                hit["kind"].as_str().unwrap_or(""),
                hit["title"].as_str().unwrap_or(""),
                hit["distance"].as_str().unwrap_or("nearby"),
            );
            out.event(
                json!({ "event": "found", "name": hood[i].person.name, "wants": item.want["title"], "text": item.word,
                        "listing": hit["id"], "author": by, "kind": kind, "title": title, "distance": distance }),
                || {
                    format!(
                        "  {:<6} searches {:?} on their own node: {by} will {kind} {title:?} ({distance})",
                        hood[i].person.name, item.word
                    )
                },
            );
        }
    }

    out.event(
        json!({ "event": "summary", "nodes": n, "listings": m, "complete": complete, "found": found,
                "missing": missing.iter().map(|(i, k)| json!({ "name": hood[*i].person.name, "missing": k })).collect::<Vec<_>>(),
                "elapsed_ms": started.elapsed().as_millis() as u64 }),
        || {
            if complete {
                format!("summary: {n} nodes, {m} listings, every node has all {m} ({} in all)", secs(started.elapsed()))
            } else {
                let who: Vec<String> = missing.iter().map(|(i, k)| format!("{} lacks {k}", hood[*i].person.name)).collect();
                format!("summary: {n} nodes, {m} listings, not on every node yet: {}", who.join(", "))
            }
        },
    );
    if !complete && args.exit_after_setup {
        bail!("the listings did not reach every node (--timeout {} s per step)", args.timeout);
    }

    let you = &hood[1 % n];
    let home = shell_word(&you.home);
    let tries = [
        format!("export TROC_HOME={home}"),
        "troc status".to_owned(),
        "troc search drill".to_owned(),
        "troc search --kind give".to_owned(),
        "troc mine".to_owned(),
        "troc watch --human".to_owned(),
        "troc offer add lend \"Hedge trimmer\" --category garden --max-loan-days 3".to_owned(),
        "troc want add \"Wheelbarrow\" --category garden".to_owned(),
    ];
    let nodes: Vec<Value> = hood
        .iter()
        .map(|h| json!({ "name": h.person.name, "peer_id": h.node.peer_id().to_base58(), "home": h.home, "api": h.api_addr.to_string() }))
        .collect();
    out.event(json!({ "event": "ready", "nodes": nodes, "listings": m, "complete": complete, "try": tries }), || {
        let mut s = format!("\nThe neighbourhood is up. From another terminal, be {}:\n", you.person.name);
        if let Some(exe) = troc_off_path() {
            s.push_str(&format!(
                "  (`troc` is not on your PATH: use {exe} for it below, or install it with `cargo install --path cli`)\n"
            ));
        }
        for t in &tries {
            s.push_str(&format!("  {t}\n"));
        }
        let names: Vec<&str> = hood.iter().map(|h| h.person.slug.as_str()).collect();
        s.push_str(&format!(
            "Any other neighbour: troc --home {}/<name> ... with <name> one of {}.\n",
            shell_word(root),
            names.join(", ")
        ));
        if args.exit_after_setup {
            s.push_str("(--exit-after-setup: stopping now.)");
        } else {
            s.push_str("Listings published from there show up here as they spread. Press Ctrl-C to stop.");
        }
        s
    });
    Ok(())
}

/// The demo's timers: gossip at its usual pace (the fast test heartbeat makes many nodes in one
/// process fight over the CPU and trip gossipsub's graft backoff), catch-up and discovery sooner
/// than a person's node, so a record that gossip missed arrives within seconds.
fn demo_timing() -> Timing {
    Timing { sync_interval: Duration::from_secs(5), discovery_interval: Duration::from_secs(10), ..Timing::default() }
}

/// Waits until the first node is connected to every other one. Returns the number of links.
async fn wait_connected(tracker: &Tracker, nodes: &[NodeHandle], deadline: Instant) -> anyhow::Result<usize> {
    let first = nodes.first().map(NodeHandle::peer_id);
    loop {
        let mut changed = tracker.changed.subscribe();
        let mut links: HashSet<(String, String)> = HashSet::new();
        let mut hub = 0;
        for node in nodes {
            let me = node.peer_id().to_base58();
            for p in node.peers().await.context("a node stopped while connecting")? {
                let other = p.peer_id.to_base58();
                links.insert(if me < other { (me.clone(), other) } else { (other, me.clone()) });
                if Some(node.peer_id()) == first {
                    hub += 1;
                }
            }
        }
        if hub + 1 >= nodes.len() {
            return Ok(links.len());
        }
        if Instant::now() >= deadline {
            bail!("the nodes did not connect in time: the first one sees {hub} of {}", nodes.len() - 1);
        }
        let _ =
            tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(500)), changed.changed()).await;
    }
}

/// The ids in a `{"listings": [...]}` answer.
fn ids_of(v: &Value) -> Vec<RecordId> {
    v["listings"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["id"].as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// While the demo runs: reports each listing published on any node (from another terminal) and how
/// long it takes to reach every node, until the shutdown signal.
async fn live(
    out: Out,
    tracker: &Arc<Tracker>,
    hood: &[Neighbour],
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    let (tx, mut rx) = mpsc::channel(64);
    if let Ok(mut live) = tracker.live.lock() {
        *live = Some(tx);
    }
    let handles: Vec<NodeHandle> = hood.iter().map(|h| h.node.clone()).collect();
    let names: Vec<&'static str> = hood.iter().map(|h| h.person.name).collect();
    let mut reports = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => break,
            // Reap finished reports, so a long-running demo does not keep them.
            Some(_) = reports.join_next(), if !reports.is_empty() => {}
            Some((i, id, t0, edited)) = rx.recv() => {
                let (tracker, handles, names) = (tracker.clone(), handles.clone(), names.clone());
                reports.spawn(async move {
                    let title = handles[i]
                        .store()
                        .get(&id)
                        .ok()
                        .flatten()
                        .and_then(|r| r.downcast::<Listing>().ok())
                        .map(|l| (l.body().kind.as_str(), l.body().title.clone()));
                    let (kind, title) = title.unwrap_or(("", String::new()));
                    let arrivals = tracker.wait_everywhere(&id, &handles, Instant::now() + Duration::from_secs(60)).await;
                    let reached = arrivals.iter().enumerate().filter(|(j, a)| *j != i && a.is_some()).count();
                    let slowest = arrivals.iter().flatten().map(|a| a.saturating_duration_since(t0)).max().unwrap_or_default();
                    let others = handles.len() - 1;
                    out.event(
                        json!({ "event": "live_published", "name": names[i], "id": id.to_string(), "kind": kind, "title": title,
                                "edited": edited, "reached": reached, "of": others, "elapsed_ms": slowest.as_millis() as u64 }),
                        || {
                            let verb = if edited { "edited" } else { "published" };
                            format!("{} {verb} {kind} {title:?}: reached {reached} of {others} others in {}", names[i], secs(slowest))
                        },
                    );
                });
            }
        }
    }
    if let Ok(mut live) = tracker.live.lock() {
        *live = None;
    }
    reports.abort_all();
}

/// This executable's path when `troc` on the PATH is not this program (after `cargo run`, say), so the
/// hints can say what to type; `None` when `troc` already finds it.
fn troc_off_path() -> Option<String> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("troc").canonicalize().ok().as_ref() == Some(&exe))
    });
    (!found).then(|| shell_word(&exe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use troc_protocol::{Category, Kind};

    #[test]
    fn people_live_around_the_centre_in_coarse_cells() {
        let centre = geohash::encode(CENTRE.0, CENTRE.1, 5);
        let mut slugs = HashSet::new();
        for i in 0..NAMES.len() {
            let p = person(i);
            assert_eq!(p.location.len(), 5);
            assert!(geohash::distance_km(&centre, &p.location).unwrap() < 12.0, "{} at {}", p.name, p.location);
            assert!(slugs.insert(p.slug.clone()), "two people share a home name");
            assert!(p.slug.bytes().all(|b| b.is_ascii_lowercase()));
        }
    }

    #[test]
    fn every_catalogue_listing_is_a_valid_record() {
        let identity = troc_protocol::Identity::from_seed(&[7; 32]);
        let items = catalogue();
        assert!(items.len() >= NAMES.len());
        for (offer, want, _) in ITEMS {
            for row in [offer, want] {
                assert!(serde_json::from_str::<Value>(row.5).is_ok(), "{}: terms are not JSON", row.2);
            }
        }
        for item in &items {
            for body in [&item.offer, &item.want] {
                let req: Value = body.clone();
                let kind: Kind = serde_json::from_value(req["kind"].clone()).unwrap();
                let category: Category = serde_json::from_value(req["category"].clone()).unwrap();
                let listing = Listing {
                    key: troc_protocol::ListingKey([1; 16]),
                    revision: 1,
                    kind,
                    category,
                    title: req["title"].as_str().unwrap().to_owned(),
                    description: req["description"].as_str().unwrap().to_owned(),
                    tags: serde_json::from_value(req["tags"].clone()).unwrap(),
                    terms: serde_json::from_value(req["terms"].clone()).unwrap(),
                    community: "demo-village".to_owned(),
                    location: "u09tv".to_owned(),
                    available_from: None,
                    available_until: None,
                    valid_until: 1_900_000_000 + 30 * 86_400,
                };
                troc_protocol::Signed::sign(&identity, 1_900_000_000, listing)
                    .unwrap_or_else(|e| panic!("{}: {e}", req["title"]));
            }
            let word = item.word;
            let has = |v: &Value| troc_node::search::tokens(v["title"].as_str().unwrap()).iter().any(|t| t == word);
            assert!(has(&item.offer), "the offer's title holds {word}");
        }
    }

    #[test]
    fn prepare_refuses_a_symlink_and_wipes_only_the_demo_dir() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("identity.key");
        std::fs::write(&keep, "x").unwrap();
        let root = dir.path().join(DEMO_DIR);
        std::fs::create_dir_all(root.join("alice")).unwrap();
        std::fs::write(root.join("alice/file"), "y").unwrap();
        prepare(&root, true).unwrap();
        assert!(root.join("alice/file").exists(), "--keep keeps");
        prepare(&root, false).unwrap();
        assert!(!root.exists());
        assert!(keep.exists(), "nothing outside the demo dir is touched");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), &root).unwrap();
            assert!(prepare(&root, false).is_err());
            assert!(keep.exists());
        }
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word(Path::new("/tmp/a/demo/bruno")), "/tmp/a/demo/bruno");
        assert_eq!(shell_word(Path::new("/tmp/my home/x")), "'/tmp/my home/x'");
    }
}
