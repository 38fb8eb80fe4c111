//! NAT traversal between real `troc up` processes in network namespaces the test builds itself.
//!
//! ```text
//!                    "internet" 11.0.0.0/24 (a bridge in namespace pub)
//!          ┌──────────────────┬──────────────────────┬──────────────────┐
//!   relay 11.0.0.10     nat-a wan 11.0.0.1      nat-b wan 11.0.0.2
//!   (troc up             │ masquerade (nftables) │ masquerade
//!    --relay-server)    nat-a lan 192.168.1.1   nat-b lan 192.168.2.1
//!                        │                       │
//!                   home-a 192.168.1.2      home-b 192.168.2.2
//!                   (troc up, Ann)          (troc up, Ben)
//! ```
//!
//! The "internet" uses addresses that look global because libp2p's autonat only probes global
//! addresses; nothing leaves the namespaces (they have no link to the host's network). Both home
//! nodes are bootstrapped only to the relay and cannot reach each other's private addresses.
//!
//! Phase 1, direct path blocked (each NAT router drops traffic to the other's public address, as a
//! NAT that cannot be punched would): Ben's offer reaches Ann through the relay's gossip, Ann finds
//! Ben by his PeerId (the offer's author) through the relay, and the whole loan (propose, accept,
//! handover, return, complete) runs over a relayed connection.
//! Phase 2, block lifted: Ann's node restarts and connects to Ben through the relay again; dcutr tries
//! to upgrade the connection by hole punching, and must: a direct connection within `PUNCH_LIMIT`.
//! The routers behave like home routers (endpoint-independent mapping, unsolicited packets dropped),
//! which can be punched through; the times are printed and recorded in `docs/reliability.md`.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). Without them the test is skipped with a message,
//! unless `TROC_REQUIRE_NETNS=1` (CI), where it fails.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use troc_tests::troc_bin;

use super::demo::{LIMIT, Proc};

const RELAY_IP: &str = "11.0.0.10";
const PORT: u16 = 7710;
/// How long the hole punch may take (it takes 50-300 ms).
const PUNCH_LIMIT: Duration = Duration::from_secs(15);

/// Runs `ip ARGS` (or any command) and says whether it worked, with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        panic!("setting up the namespaces failed: {e}");
    }
}

/// The namespaces of one run; deleting them (on drop, even after a panic) removes every link and
/// process-less resource in them. Processes are stopped before (their `Proc`s are dropped first).
struct Topology {
    prefix: String,
    created: Vec<String>,
}

impl Topology {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        run("ip", &["netns", "add", &ns])?;
        self.created.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair from `a` (named `a_if`) to `b` (named `b_if`), both up.
    fn link(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        must("ip", &["-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b]);
        must("ip", &["-n", a, "link", "set", a_if, "up"]);
        must("ip", &["-n", b, "link", "set", b_if, "up"]);
    }

    fn addr(&self, ns: &str, dev: &str, cidr: &str) {
        must("ip", &["-n", ns, "addr", "add", cidr, "dev", dev]);
    }

    /// Builds the whole topology (see the module comment). Err when namespaces cannot be made here.
    fn build() -> Result<Topology, String> {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut t = Topology { prefix: format!("troc{}x{n}", std::process::id()), created: Vec::new() };
        // The first namespace tells whether we may make them at all.
        let public = t.add_ns("pub")?;
        let relay = t.add_ns("relay")?;
        let (nat_a, nat_b) = (t.add_ns("nat-a")?, t.add_ns("nat-b")?);
        let (home_a, home_b) = (t.add_ns("home-a")?, t.add_ns("home-b")?);
        must("ip", &["-n", &public, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", &public, "link", "set", "br0", "up"]);
        for (ns, wan, port) in [(&relay, "eth0", "p-relay"), (&nat_a, "wan", "p-nat-a"), (&nat_b, "wan", "p-nat-b")] {
            t.link(ns, wan, &public, port);
            must("ip", &["-n", &public, "link", "set", port, "master", "br0"]);
        }
        t.addr(&relay, "eth0", &format!("{RELAY_IP}/24"));
        for (nat, home, public_ip, lan) in
            [(&nat_a, &home_a, "11.0.0.1", "192.168.1"), (&nat_b, &home_b, "11.0.0.2", "192.168.2")]
        {
            t.addr(nat, "wan", &format!("{public_ip}/24"));
            t.link(nat, "lan", home, "eth0");
            t.addr(nat, "lan", &format!("{lan}.1/24"));
            t.addr(home, "eth0", &format!("{lan}.2/24"));
            must("ip", &["-n", home, "route", "add", "default", "via", &format!("{lan}.1")]);
            must("ip", &["netns", "exec", nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
            // Linux masquerade: the source port is kept when free (endpoint-independent mapping),
            // inbound packets pass only as replies to a connection tracked from inside
            // (address- and port-dependent filtering): a "port-restricted cone" NAT. Like a home
            // router's firewall, it drops what arrives unasked on its public side instead of
            // answering it: without the `input` chain, the router's own TCP stack answers a SYN
            // that arrives before its mapping exists with a RST, which kills the punch.
            let rules = "table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"wan\" masquerade\n }\n chain input {\n  type filter hook input priority filter; policy accept;\n  iifname \"wan\" ct state established,related accept\n  iifname \"wan\" drop\n }\n}\n";
            nft(nat, rules);
        }
        Ok(t)
    }

    /// Drops traffic between the two NAT routers' public addresses, so only the relay connects them.
    fn block_direct(&self) {
        for (nat, other) in [("nat-a", "11.0.0.2"), ("nat-b", "11.0.0.1")] {
            let rules = format!(
                "table ip block {{\n chain outbound {{\n  type filter hook output priority filter; policy accept;\n  ip daddr {other} drop\n }}\n chain forwarded {{\n  type filter hook forward priority filter; policy accept;\n  ip daddr {other} drop\n }}\n}}\n"
            );
            nft(&self.ns(nat), &rules);
        }
    }

    fn unblock_direct(&self) {
        for nat in ["nat-a", "nat-b"] {
            must("ip", &["netns", "exec", &self.ns(nat), "nft", "delete", "table", "ip", "block"]);
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// Loads an nftables ruleset into namespace `ns`.
fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("rules written");
    let out = child.wait_with_output().expect("nft ends");
    assert!(out.status.success(), "nft in {ns}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Why namespaces cannot be used here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() != Some("0") {
        return Some("not running as root".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` is not installed (Debian package {package})"));
        }
    }
    None
}

/// `ip netns exec NS troc --json --home HOME ARGS`, exit 0 expected; its JSON.
fn troc_json(ns: &str, home: &Path, args: &[&str]) -> Value {
    let out = troc(ns, home, args);
    assert!(
        out.status.success(),
        "troc {args:?} in {ns}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn troc(ns: &str, home: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(troc_bin())
        .arg("--json")
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("TROC_HOME")
        .output()
        .expect("troc runs")
}

/// `troc up` in namespace `ns`, listening on `listen`; waits for its API.
fn up(name: &str, ns: &str, home: &Path, listen: &str, extra: &[&str], logs: &Path) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(troc_bin())
        .arg("--home")
        .arg(home)
        .args(["--json", "up", "--no-mdns", "--listen", listen, "--api", "127.0.0.1:0"])
        .args(extra)
        .env_remove("TROC_HOME")
        // The node's own info lines (reachability, relays, hole punching) land in <name>.stderr.
        .env("RUST_LOG", std::env::var("TROC_NAT_LOG").unwrap_or_else(|_| "warn,troc_node=info".into()));
    let mut node = Proc::spawn(name, cmd, logs);
    node.wait_event("api");
    node
}

/// Polls `check` every 200 ms until it gives a value, for at most `limit`.
fn poll<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    super::support::poll_blocking(limit, Duration::from_millis(200), what, check)
}

/// The `/v1/peers` entries of the node in `ns` for `peer`.
fn peer_entries(ns: &str, home: &Path, peer: &str) -> Vec<Value> {
    let v = troc_json(ns, home, &["peers"]);
    v["peers"].as_array().map(|l| l.iter().filter(|p| p["peer_id"] == peer).cloned().collect()).unwrap_or_default()
}

fn grep(file: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_nodes_behind_nats_trade_through_a_relay_then_hole_punch_a_direct_connection() {
    let required = std::env::var("TROC_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "TROC_REQUIRE_NETNS=1 but network namespaces cannot be used: {why}");
        eprintln!("SKIPPED two_nodes_behind_nats_trade_through_a_relay_then_hole_punch_a_direct_connection: {why}");
    };
    if let Some(why) = missing_prerequisite() {
        return skip(why);
    }
    let topo = match Topology::build() {
        Ok(t) => t,
        Err(why) => return skip(why),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // TROC_NAT_LOG (a RUST_LOG filter) also keeps the nodes' logs for a look after the run.
    let logs = dir.path().to_owned();
    let _dir = if std::env::var_os("TROC_NAT_LOG").is_some() {
        eprintln!("nat: logs kept in {}", dir.keep().display());
        None
    } else {
        Some(dir)
    };
    let logs = logs.as_path();
    let (relay_ns, a_ns, b_ns) = (topo.ns("relay"), topo.ns("home-a"), topo.ns("home-b"));
    let (relay_home, a_home, b_home) = (logs.join("relay"), logs.join("ann"), logs.join("ben"));
    for (ns, home, name) in [(&relay_ns, &relay_home, "Relay"), (&a_ns, &a_home, "Ann"), (&b_ns, &b_home, "Ben")] {
        troc_json(ns, home, &["init", "--name", name, "--community", "nat-test", "--location", "u09tv"]);
    }
    let id = |ns: &str, home: &Path| troc_json(ns, home, &["id"])["peer_id"].as_str().expect("peer id").to_owned();
    let (relay_id, b_id) = (id(&relay_ns, &relay_home), id(&b_ns, &b_home));
    topo.block_direct();

    let relay_addr = format!("/ip4/{RELAY_IP}/tcp/{PORT}/p2p/{relay_id}");
    let mut relay =
        up("relay", &relay_ns, &relay_home, &format!("/ip4/{RELAY_IP}/tcp/{PORT}"), &["--relay-server"], logs);
    let start = Instant::now();
    let a_listen = format!("/ip4/192.168.1.2/tcp/{PORT}");
    let mut ann = up("ann", &a_ns, &a_home, &a_listen, &["--bootstrap", &relay_addr], logs);
    let mut ben =
        up("ben", &b_ns, &b_home, &format!("/ip4/192.168.2.2/tcp/{PORT}"), &["--bootstrap", &relay_addr], logs);
    // From Ann's home, the relay is reachable and Ben's private address is not (the same probe both ways,
    // so a missing tool cannot make the second check pass).
    let tcp = |ns: &str, to: &str| {
        run("ip", &["netns", "exec", ns, "timeout", "3", "bash", "-c", &format!("echo > /dev/tcp/{to}")])
    };
    assert_eq!(tcp(&a_ns, &format!("{RELAY_IP}/{PORT}")), Ok(()), "the relay is reachable from Ann's home");
    assert!(tcp(&a_ns, &format!("192.168.2.2/{PORT}")).is_err(), "Ben's private address is not");

    // Ben learns from autonat that he is behind NAT and listens through the relay.
    let circuit = ben.wait_json(LIMIT, "listening through the relay", |v| {
        v["event"] == "listening" && v["address"].as_str().is_some_and(|a| a.contains("p2p-circuit"))
    });
    let reserved = start.elapsed();
    eprintln!("nat: Ben listens through the relay after {reserved:.1?}: {}", circuit["address"]);

    // Ben's offer reaches Ann through the relay's gossip: she finds him by his PeerId.
    let offer =
        troc_json(&b_ns, &b_home, &["offer", "add", "lend", "Ladder", "--category", "tools", "--max-loan-days", "3"]);
    let listing = offer["id"].as_str().expect("listing id").to_owned();
    let t = Instant::now();
    poll(LIMIT, "Ben's offer on Ann's node", || {
        let r = troc_json(&a_ns, &a_home, &["search", "ladder"]);
        r["listings"].as_array()?.iter().any(|l| l["id"] == listing.as_str()).then_some(())
    });
    let listing_time = t.elapsed();
    eprintln!("nat: Ben's offer reached Ann through the relay in {listing_time:.1?}");

    // The loan, through the relay: Ann (borrower) proposes to Ben, known only by his PeerId.
    let t = Instant::now();
    let proposed = troc_json(&a_ns, &a_home, &["deal", "propose", &listing, "--days", "2", "-m", "Saturday?"]);
    let proposal = proposed["proposal"].as_str().expect("proposal id").to_owned();
    let found = t.elapsed();
    let entries = peer_entries(&a_ns, &a_home, &b_id);
    assert!(
        !entries.is_empty() && entries.iter().all(|p| p["relayed"] == true),
        "Ann reaches Ben through the relay only: {entries:?}"
    );
    eprintln!("nat: Ann reached Ben through the relay (proposal delivered) in {found:.1?}: {entries:?}");
    poll(LIMIT, "the proposal on Ben's node", || {
        (troc(&b_ns, &b_home, &["deal", "show", &proposal]).status.success()).then_some(())
    });
    let accepted = troc_json(&b_ns, &b_home, &["deal", "accept", &proposal]);
    assert_eq!(accepted["agreed"], true, "{accepted}");
    let deal = accepted["agreement"].as_str().expect("agreement id").to_owned();
    let status = |ns: &str, home: &Path| {
        troc_json(ns, home, &["deal", "show", &deal])["status"].as_str().unwrap_or("").to_owned()
    };
    poll(LIMIT, "agreed on Ann's node", || (status(&a_ns, &a_home) == "agreed").then_some(()));
    troc_json(&b_ns, &b_home, &["deal", "handover", &deal]);
    poll(LIMIT, "handed over on Ann's node", || (status(&a_ns, &a_home) == "handed_over").then_some(()));
    troc_json(&a_ns, &a_home, &["deal", "handover", &deal, "--ack"]);
    troc_json(&a_ns, &a_home, &["deal", "return", &deal, "--note", "Thanks"]);
    poll(LIMIT, "returned on Ben's node", || (status(&b_ns, &b_home) == "returned").then_some(()));
    troc_json(&b_ns, &b_home, &["deal", "return", &deal, "--ack"]);
    troc_json(&b_ns, &b_home, &["deal", "complete", &deal]);
    poll(LIMIT, "completed on Ann's node", || (status(&a_ns, &a_home) == "completed").then_some(()));
    let deal_time = t.elapsed();
    let entries = peer_entries(&a_ns, &a_home, &b_id);
    assert!(entries.iter().all(|p| p["relayed"] == true), "the direct path is blocked: {entries:?}");
    eprintln!("nat: the loan completed through the relay in {deal_time:.1?}");

    // Phase 2: the direct path opens. Ann's node restarts (on another port, so the new connections
    // do not collide with the old ones' TIME_WAIT), reconnects to Ben through the relay, and dcutr
    // tries to punch through both NATs.
    topo.unblock_direct();
    assert!(ann.terminate().success());
    drop(ann);
    let a_listen = format!("/ip4/192.168.1.2/tcp/{}", PORT + 1);
    let mut ann = up("ann2", &a_ns, &a_home, &a_listen, &["--bootstrap", &relay_addr], logs);
    ann.wait_json(LIMIT, "connected to the relay", |v| {
        v["event"] == "peer_connected" && v["peer"] == relay_id.as_str()
    });
    // Identify with the relay tells Ann her public address: dcutr needs it before the relayed connection.
    poll(LIMIT, "the relay identified", || {
        peer_entries(&a_ns, &a_home, &relay_id).first().filter(|p| p["agent"].is_string()).map(|_| ())
    });
    let t = Instant::now();
    if peer_entries(&a_ns, &a_home, &b_id).is_empty() {
        let via = format!("{relay_addr}/p2p-circuit/p2p/{b_id}");
        troc_json(&a_ns, &a_home, &["connect", &via]);
    }
    let entries = peer_entries(&a_ns, &a_home, &b_id);
    assert!(!entries.is_empty(), "Ann reconnected to Ben through the relay");
    let deadline = Instant::now() + PUNCH_LIMIT;
    let direct = loop {
        let entries = peer_entries(&a_ns, &a_home, &b_id);
        if entries.iter().any(|p| p["relayed"] == false) {
            break Some((t.elapsed(), entries));
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200)); // a poll interval inside a bounded wait
    };
    let punch_logs: Vec<String> =
        ["ann2", "ben"].iter().flat_map(|n| grep(&logs.join(format!("{n}.stderr")), "hole punch")).collect();
    match &direct {
        Some((took, entries)) => eprintln!("nat: HOLE PUNCH SUCCEEDED in {took:.1?}: {entries:?}"),
        None => eprintln!("nat: HOLE PUNCH FAILED within {PUNCH_LIMIT:?}"),
    }
    for line in &punch_logs {
        eprintln!("nat: {line}");
    }
    eprintln!(
        "nat: summary: reservation {reserved:.1?}, listing {listing_time:.1?}, found {found:.1?}, loan {deal_time:.1?}, hole punch {}",
        direct.as_ref().map_or("no".to_owned(), |(took, _)| format!("yes in {took:.1?}"))
    );
    assert!(
        direct.is_some(),
        "no direct connection within {PUNCH_LIMIT:?} (logs in {}): {punch_logs:?}",
        logs.display()
    );
    // The deal is still there after the restart.
    assert_eq!(status(&a_ns, &a_home), "completed");

    assert!(ann.terminate().success());
    assert!(ben.terminate().success());
    assert!(relay.terminate().success());
}
