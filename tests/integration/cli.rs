//! The real `troc` binary, as a person or a bot runs it: identity commands, usage errors and exit
//! codes, `troc up` nodes on loopback that connect and stop cleanly on Ctrl-C, an offer published on
//! one node found by `troc search` and streamed by `troc watch` on the others (with an alert), and a
//! backup exported and imported into a fresh home.
//!
//! Every child process is killed when its guard is dropped, so a failing test leaves none behind.
//! Nothing sleeps to synchronise: waits are bounded loops on a condition (a line, a search result).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use troc_tests::troc_bin;

const LIMIT: Duration = Duration::from_secs(30);
/// How long a record may take to travel between nodes (gossip, or catch-up after connecting).
const PROPAGATION: Duration = Duration::from_secs(90);

fn troc(home: &Path, args: &[&str]) -> Output {
    Command::new(troc_bin()).arg("--home").arg(home).args(args).env_remove("TROC_HOME").output().expect("troc runs")
}

/// Runs `troc --json ARGS`, expects exit 0 and returns the JSON it printed.
fn troc_json(home: &Path, args: &[&str]) -> Value {
    let out = troc(home, &[&["--json"][..], args].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "troc {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("troc {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A child process whose stdout lines arrive on a channel; killed when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    name: String,
}

impl Proc {
    fn spawn(name: &str, home: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(troc_bin())
            .arg("--home")
            .arg(home)
            .args(args)
            .env_remove("TROC_HOME")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("troc starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, seen: Vec::new(), name: name.to_owned() }
    }

    /// `troc up` on loopback only, with the API on a free port, following `north`.
    fn up(name: &str, home: &Path, extra: &[&str]) -> Proc {
        let args =
            [
                &[
                    "up",
                    "--no-mdns",
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                    "--api",
                    "127.0.0.1:0",
                    "--community",
                    "north",
                ][..],
                extra,
            ]
            .concat();
        let mut p = Proc::spawn(name, home, &args);
        p.wait_line("api on");
        p
    }

    /// Waits for a line matching `pred`, for at most `limit`.
    fn wait_for(&mut self, limit: Duration, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("{}: no line {what} within {limit:?}; saw {:#?}", self.name, self.seen),
            }
        }
    }

    fn wait_line(&mut self, needle: &str) -> String {
        self.wait_for(LIMIT, &format!("with {needle:?}"), |l| l.contains(needle))
    }

    /// Waits for an NDJSON line whose `event` is `kind` and that satisfies `pred`.
    fn wait_event(&mut self, kind: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let line = self.wait_for(PROPAGATION, &format!("with event {kind:?}"), |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == kind && pred(&v))
        });
        serde_json::from_str(&line).expect("json line")
    }

    /// Waits for the process to exit by itself, for at most LIMIT.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {LIMIT:?}", self.name);
            std::thread::sleep(Duration::from_millis(20)); // polling the exit, not synchronising
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
        assert!(status.success());
        self.wait_exit()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` every 100 ms until it gives a value, for at most `limit`.
fn poll<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    super::support::poll_blocking(limit, Duration::from_millis(100), what, check)
}

fn init(home: &Path, name: &str) -> String {
    let v = troc_json(home, &["init", "--name", name, "--community", "north", "--location", "51.5202,-0.0979"]);
    v["identity"]["peer_id"].as_str().expect("peer id").to_owned()
}

/// The node's loopback dialable address, from `troc invite --json`.
fn dial_address(home: &Path) -> String {
    let invite = troc_json(home, &["invite"]);
    assert!(invite["invite"].as_str().is_some_and(|i| i.starts_with("troc1")), "{invite}");
    invite["addresses"]
        .as_array()
        .and_then(|a| a.iter().filter_map(Value::as_str).find(|a| a.contains("/127.0.0.1/tcp/")))
        .unwrap_or_else(|| panic!("no loopback TCP address in {invite}"))
        .to_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn identity_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = troc(&home, &["id"]);
    assert_eq!(code(&out), Some(4), "no identity yet: not found");
    let out = troc(&home, &["--json", "init", "--name", "Alice", "--location", "51.5202,-0.0979"]);
    assert_eq!(code(&out), Some(0));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let peer = created["identity"]["peer_id"].as_str().unwrap().to_owned();
    assert!(peer.starts_with("12D3KooW"));
    assert_eq!(created["profile"]["location"].as_str().map(str::len), Some(5), "the location is coarsened: {created}");
    let toml = std::fs::read_to_string(home.join("troc.toml")).unwrap();
    assert!(toml.contains("name = \"Alice\""), "{toml}");
    let out = troc(&home, &["init"]);
    assert_eq!(code(&out), Some(5), "never overwrites an identity");
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwrites"));
    let out = troc(&home, &["--json", "id"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["peer_id"], peer.as_str(), "the same identity is loaded");

    // Usage errors: caught by the value parsers, before anything runs.
    for bad in [
        &["up", "--community", "Not A Slug"][..],
        &["up", "--listen", "nonsense"],
        &["up", "--api", "0.0.0.0:0"],
        &["no-such-command"],
        &["offer", "add", "want", "Drill", "--category", "tools"],
        &["offer", "add", "lend", "Drill", "--category", "toolz"],
        &["offer", "add", "lend", "Drill", "--category", "tools", "--community", "North"],
        &["offer", "add", "lend", "Drill", "--category", "tools", "--location", "u09a"],
        &["offer", "add", "lend", "Drill", "--category", "tools", "--deposit", "twenty"],
        &["search", "--near", "91,0"],
        &["search", "--kind", "borrow"],
        &["search", "--limit", "0"],
        &["listing", "show", "abc"],
        &["join", "not-an-invite"],
        &["watch", "--type", "everything"],
        &["init", "--location", "aaa"],
    ] {
        let out = troc(&home, bad);
        assert_eq!(code(&out), Some(2), "usage error for {bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The node is not running: exit 3, with the advice, and the code in --json.
    for cmd in [&["status"][..], &["search", "drill"], &["watch"], &["mine"], &["alert", "list"], &["peers"]] {
        let out = troc(&home, cmd);
        assert_eq!(code(&out), Some(3), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("troc up"), "{cmd:?}");
    }
    let out = troc(&home, &["--json", "status"]);
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "not_running");
    // A stale api.json (the node died): nothing listens there, still "not running".
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(home.join("api.json"), format!("{{\"address\": \"127.0.0.1:{port}\", \"pid\": 1}}")).unwrap();
    std::fs::write(home.join("api.token"), "00".repeat(32)).unwrap();
    assert_eq!(code(&troc(&home, &["status"])), Some(3));

    // Help everywhere, completions and the man page from the same definitions.
    let out = troc(&home, &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Offers and wants:") && help.contains("Backup:"), "{help}");
    for cmd in [&["offer", "add", "--help"][..], &["search", "--help"], &["watch", "--help"], &["import", "--help"]] {
        let out = troc(&home, cmd);
        assert_eq!(code(&out), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"), "{cmd:?}");
    }
    let out = troc(&home, &["completions", "bash"]);
    assert!(code(&out) == Some(0) && String::from_utf8_lossy(&out.stdout).contains("troc"));
    let out = troc(&home, &["man"]);
    assert!(code(&out) == Some(0) && String::from_utf8_lossy(&out.stdout).contains(".TH"));
}

#[test]
fn troc_up_nodes_connect_and_stop_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (a_home, b_home) = (dir.path().join("a"), dir.path().join("b"));
    for h in [&a_home, &b_home] {
        assert_eq!(code(&troc(h, &["init"])), Some(0));
    }
    let mut a = Proc::up("a", &a_home, &[]);
    let addr = a.seen.iter().find(|l| l.starts_with("listening on ")).expect("a listening line").clone();
    let addr = addr.trim_start_matches("listening on ").to_owned();
    let a_peer = addr.rsplit('/').next().unwrap().to_owned();
    let mut b = Proc::up("b", &b_home, &["--bootstrap", &addr]);
    let b_line = b.seen.iter().find(|l| l.starts_with("listening on ")).expect("b listening line").clone();
    let b_peer = b_line.rsplit('/').next().unwrap().to_owned();
    b.wait_line(&format!("connected to {a_peer}"));
    a.wait_line(&format!("connected to {b_peer}"));
    assert!(a_home.join("api.json").exists() && a_home.join("api.token").exists());
    let status = troc_json(&a_home, &["status"]);
    assert_eq!(status["peer_id"], a_peer.as_str());
    for (node, home) in [(&mut b, &b_home), (&mut a, &a_home)] {
        let status = node.interrupt();
        assert!(status.success(), "{} exits 0 after Ctrl-C: {status:?} {:?}", node.name, node.seen);
        assert!(node.seen.iter().any(|l| l == "shutting down"), "{}: {:?}", node.name, node.seen);
        assert!(!home.join("api.json").exists(), "{}: api.json is removed at shutdown", node.name);
    }
}

#[test]
fn an_offer_travels_to_search_watch_and_alerts_on_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (a_home, b_home, c_home) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    init(&a_home, "Alice");
    let b_peer = init(&b_home, "Bob");
    init(&c_home, "Carol");
    let mut a = Proc::up("a", &a_home, &[]);
    let a_addr = dial_address(&a_home);
    let mut b = Proc::up("b", &b_home, &["--bootstrap", &a_addr]);
    let mut c = Proc::up("c", &c_home, &[]);
    // c joins a with a's invite, then `troc connect` to the same address answers with a's peer id.
    let invite = troc_json(&a_home, &["invite"]);
    let joined = troc_json(&c_home, &["join", invite["invite"].as_str().unwrap()]);
    assert_eq!(joined["connected"], true, "{joined}");
    assert_eq!(joined["peer_id"], invite["peer_id"]);
    let connected = troc_json(&c_home, &["connect", &a_addr]);
    assert!(a_addr.ends_with(connected["peer_id"].as_str().unwrap()), "{connected}");
    a.wait_line(&format!("connected to {b_peer}"));
    poll(LIMIT, "a to have two peers", || {
        let peers = troc_json(&a_home, &["peers"]);
        (peers["peers"].as_array().map_or(0, Vec::len) >= 2).then_some(())
    });

    // An alert on c, and event streams on b (everything) and c (alerts only).
    let alert = troc_json(&c_home, &["alert", "add", "drills", "drill", "--kind", "lend,share"]);
    let alert_id = alert["id"].as_str().expect("alert id").to_owned();
    let listed = troc_json(&c_home, &["alert", "list"]);
    assert!(listed["alerts"].as_array().unwrap().iter().any(|x| x["id"] == alert_id.as_str()), "{listed}");
    let mut b_watch = Proc::spawn("b watch", &b_home, &["watch"]);
    let mut c_watch = Proc::spawn("c watch", &c_home, &["watch", "--type", "alert"]);

    let offer = troc_json(
        &a_home,
        &[
            "offer",
            "add",
            "lend",
            "Cordless drill",
            "--category",
            "tools",
            "--tag",
            "drill",
            "--max-loan-days",
            "7",
            "--deposit",
            "20 EUR",
            "--description",
            "18 V, two batteries",
        ],
    );
    let id = offer["id"].as_str().expect("listing id").to_owned();
    assert_eq!(offer["kind"], "lend");
    assert_eq!(offer["community"], "north", "the community comes from troc.toml");
    assert_eq!(offer["terms"]["deposit"]["amount_minor"], 2000);
    let mine = troc_json(&a_home, &["mine"]);
    assert!(mine["listings"].as_array().unwrap().iter().any(|l| l["id"] == id.as_str()), "{mine}");

    for home in [&b_home, &c_home] {
        let found = poll(PROPAGATION, "the offer in a search on another node", || {
            let r = troc_json(home, &["search", "drill", "--kind", "lend"]);
            r["listings"].as_array().and_then(|l| l.iter().find(|l| l["id"] == id.as_str()).cloned())
        });
        assert_eq!(found["author"]["name"], "Alice", "{found}");
        assert_eq!(found["mine"], false);
    }
    // --within measures from troc.toml's location when --near is not given.
    let near = troc_json(&b_home, &["search", "--within", "10"]);
    let hit = near["listings"].as_array().and_then(|l| l.iter().find(|l| l["id"] == id.as_str())).cloned();
    assert!(hit.is_some_and(|h| h["distance_km"].as_f64().is_some_and(|d| d < 10.0)), "{near}");
    let event = b_watch.wait_event("listing_new", |v| v["listing"]["id"] == id.as_str());
    assert_eq!(event["listing"]["title"], "Cordless drill");
    let fired = c_watch.wait_event("alert", |v| v["listing"]["id"] == id.as_str());
    assert_eq!(fired["alert"], alert_id.as_str());

    // The listing by prefix, someone else's listing cannot be edited, an unknown one is not found.
    let shown = troc_json(&b_home, &["listing", "show", &id[..10]]);
    assert_eq!(shown["id"], id.as_str());
    let out = troc(&b_home, &["listing", "edit", &id, "--title", "Mine now"]);
    assert_eq!(code(&out), Some(5), "someone else's listing: {}", String::from_utf8_lossy(&out.stderr));
    let out = troc(&b_home, &["--json", "listing", "show", "ffffffffffff"]);
    assert_eq!(code(&out), Some(4));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "not_found", "the API's code is kept: {err}");

    // Edit and withdraw travel too.
    let edited = troc_json(&a_home, &["listing", "edit", &id[..8], "--title", "Cordless drill, 18 V"]);
    assert_eq!(edited["revision"], 2, "{edited}");
    b_watch.wait_event("listing_edited", |v| v["listing"]["title"] == "Cordless drill, 18 V");
    let withdrawn = troc_json(&a_home, &["listing", "withdraw", edited["id"].as_str().unwrap(), "--reason", "lent"]);
    assert!(withdrawn["withdrawal"].is_string(), "{withdrawn}");
    b_watch.wait_event("listing_withdrawn", |_| true);
    assert_eq!(code(&troc(&a_home, &["listing", "show", &id])), Some(4), "a withdrawn listing is gone");

    let removed = troc_json(&c_home, &["alert", "remove", &alert_id]);
    assert_eq!(removed["removed"], alert_id.as_str());
    assert_eq!(code(&troc(&c_home, &["alert", "remove", &alert_id])), Some(4));

    // The event streams end with exit 0 when their node shuts down.
    for (node, watch) in [(&mut b, &mut b_watch), (&mut c, &mut c_watch)] {
        assert!(node.interrupt().success(), "{}: {:?}", node.name, node.seen);
        let status = watch.wait_exit();
        assert_eq!(status.code(), Some(0), "{} ends with its node: {:?}", watch.name, watch.seen);
    }
    assert!(a.interrupt().success());
}

#[test]
fn export_and_import_into_a_fresh_home() {
    let dir = tempfile::tempdir().unwrap();
    let (a_home, fresh, other) = (dir.path().join("a"), dir.path().join("fresh"), dir.path().join("other"));
    let a_peer = init(&a_home, "Alice");
    init(&other, "Olga");
    let mut a = Proc::up("a", &a_home, &[]);
    let give = troc_json(&a_home, &["offer", "add", "give", "Apple tree seedlings", "-c", "garden"]);
    let want = troc_json(&a_home, &["want", "add", "Ladder, 3 m", "-c", "tools", "--max-loan-days", "2"]);
    let backup = dir.path().join("backup.json");
    let exported = troc_json(&a_home, &["export", backup.to_str().unwrap()]);
    assert_eq!(exported["identity"], true);
    assert!(exported["records"].as_u64().unwrap() >= 2, "{exported}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds the secret key");
    }
    let out = troc(&a_home, &["export", backup.to_str().unwrap()]);
    assert_eq!(code(&out), Some(5), "never over an existing file without --force");
    assert_eq!(code(&troc(&a_home, &["export", "--force", backup.to_str().unwrap()])), Some(0));
    assert!(a.interrupt().success());

    // Another person's home refuses the backup's identity.
    let out = troc(&other, &["import", backup.to_str().unwrap()]);
    assert_eq!(code(&out), Some(5), "{}", String::from_utf8_lossy(&out.stderr));

    // A fresh home: the identity is restored, but the records need the node.
    let out = troc(&fresh, &["import", backup.to_str().unwrap()]);
    assert_eq!(code(&out), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("troc up"));
    assert_eq!(troc_json(&fresh, &["id"])["peer_id"], a_peer.as_str(), "the identity was restored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fresh.join("identity.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let mut f = Proc::up("fresh", &fresh, &[]);
    let imported = troc_json(&fresh, &["import", backup.to_str().unwrap()]);
    assert_eq!(imported["identity"], "same");
    assert!(imported["stored"].as_u64().unwrap() >= 2, "{imported}");
    assert_eq!(imported["rejected"].as_array().map(Vec::len), Some(0), "{imported}");
    let mine = troc_json(&fresh, &["mine"]);
    let ids: Vec<&str> = mine["listings"].as_array().unwrap().iter().filter_map(|l| l["id"].as_str()).collect();
    for l in [&give, &want] {
        assert!(ids.contains(&l["id"].as_str().unwrap()), "{ids:?} lacks {}", l["id"]);
    }
    let again = troc_json(&fresh, &["import", backup.to_str().unwrap()]);
    assert_eq!(again["stored"], 0, "a second import only finds duplicates: {again}");
    assert!(f.interrupt().success());
}

/// A loan through the real binary: `troc deal propose` on the borrower's node, `troc inbox` and
/// `troc deal accept` on the lender's, handover and return acknowledged with `--ack`, completion,
/// `troc review` on both sides (revealed once both are in), deal events on `troc watch`, and the
/// exit codes of a deal that does not exist and of a bad deal id.
#[test]
fn a_loan_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (a_home, b_home) = (dir.path().join("a"), dir.path().join("b"));
    init(&a_home, "Alice");
    init(&b_home, "Bob");
    let mut a = Proc::up("a", &a_home, &[]);
    let a_addr = dial_address(&a_home);
    let _b = Proc::up("b", &b_home, &["--bootstrap", &a_addr]);
    a.wait_line("connected to");
    let mut a_watch = Proc::spawn("a watch", &a_home, &["watch", "--type", "deal_proposal,deal_completion"]);

    let offer = troc_json(&a_home, &["offer", "add", "lend", "Ladder", "--category", "tools", "--max-loan-days", "3"]);
    let listing = offer["id"].as_str().unwrap().to_owned();
    poll(PROPAGATION, "the offer on b", || {
        let r = troc_json(&b_home, &["search", "ladder"]);
        r["listings"].as_array().and_then(|l| l.iter().find(|l| l["id"] == listing.as_str()).cloned())
    });
    let proposed = troc_json(&b_home, &["deal", "propose", &listing, "--days", "2", "-m", "Saturday?"]);
    let proposal = proposed["proposal"].as_str().unwrap().to_owned();
    a_watch.wait_event("deal_proposal", |v| v["deal"] == proposal.as_str());
    let inbox = troc_json(&a_home, &["inbox"]);
    assert_eq!(inbox["items"][0]["kind"], "proposal", "{inbox}");

    let accepted = troc_json(&a_home, &["deal", "accept", &proposal[..12]]);
    assert_eq!(accepted["agreed"], true, "{accepted}");
    let deal = accepted["agreement"].as_str().unwrap().to_owned();
    let status = |home: &Path| troc_json(home, &["deal", "show", &deal])["status"].as_str().unwrap_or("").to_owned();
    poll(PROPAGATION, "agreed on b", || (status(&b_home) == "agreed").then_some(()));

    // An extension request, declined from the inbox (nothing published; the due date stays).
    let due = troc_json(&a_home, &["deal", "show", &deal])["due"].clone();
    let asked = troc_json(&b_home, &["deal", "extend", &deal, "--days", "2"]);
    let request = asked["request"].as_str().expect("a request id").to_owned();
    poll(PROPAGATION, "the extension request in a's inbox", || {
        let inbox = troc_json(&a_home, &["inbox"]);
        inbox["items"].as_array()?.iter().any(|i| i["kind"] == "extension_request").then_some(())
    });
    let declined = troc_json(&a_home, &["deal", "extend", "--decline", &request]);
    assert_eq!(declined["declined"], request.as_str(), "{declined}");
    let inbox = troc_json(&a_home, &["inbox"]);
    assert!(inbox["items"].as_array().is_some_and(|l| l.iter().all(|i| i["kind"] != "extension_request")), "{inbox}");
    assert_eq!(troc_json(&a_home, &["deal", "show", &deal])["due"], due);
    assert_eq!(code(&troc(&a_home, &["deal", "extend", "--decline", &request])), Some(4), "declined already");

    let handover = troc_json(&a_home, &["deal", "handover", &deal]);
    let handover_id = handover["record"]["id"].as_str().expect("the handover's id").to_owned();
    poll(PROPAGATION, "handed over on b", || (status(&b_home) == "handed_over").then_some(()));
    troc_json(&b_home, &["deal", "handover", &deal, "--ack"]);
    troc_json(&b_home, &["deal", "return", &deal, "--note", "Thanks"]);
    poll(PROPAGATION, "returned on a", || (status(&a_home) == "returned").then_some(()));
    troc_json(&a_home, &["deal", "return", &deal, "--ack"]);
    troc_json(&a_home, &["deal", "complete", &deal]);
    a_watch.wait_event("deal_completion", |v| v["deal"] == deal.as_str());
    poll(PROPAGATION, "completed on b", || (status(&b_home) == "completed").then_some(()));

    troc_json(&a_home, &["review", &deal, "positive", "--text", "Careful"]);
    troc_json(&b_home, &["review", &deal, "positive", "--text", "Kind"]);
    for home in [&a_home, &b_home] {
        poll(PROPAGATION, "both reviews revealed", || {
            let v = troc_json(home, &["deal", "show", &deal]);
            let reviews = v["reviews"].as_array().cloned().unwrap_or_default();
            (reviews.len() == 2 && reviews.iter().all(|r| r["state"] == "revealed")).then_some(())
        });
    }
    let listed = troc_json(&b_home, &["deal", "list"]);
    assert_eq!(listed["deals"][0]["status"], "completed", "{listed}");
    let human = troc(&b_home, &["deal", "list"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("completed"));

    // Reputation: a's view of b shows the evidence and the path through a, in words and in JSON.
    let b_id = troc_json(&b_home, &["id"])["peer_id"].as_str().unwrap().to_owned();
    let rep = poll(PROPAGATION, "the deal in a's view of b", || {
        let v = troc_json(&a_home, &["rep", &b_id]);
        (v["evidence"]["deals_completed"] == 1).then_some(v)
    });
    assert_eq!((rep["standing"].as_str(), &rep["evidence"]["trusted_counterparties"]), (Some("probation"), &json!(1)));
    let human = troc(&a_home, &["rep", &b_id, "--explain"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(code(&human), Some(0), "{text}");
    assert!(text.contains("Bob") && text.contains("Standing: probation"), "{text}");
    assert!(text.contains("Deals completed: 1 with 1 counterparty, 1 of them you trust"), "{text}");
    assert!(text.contains("you -> Bob"), "the path hop by hop, with names: {text}");
    let top = troc(&a_home, &["rep", "--top", "5"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("Bob"));
    // A vouch, listed on the other node; revoking it there is refused (not b's record), here it works.
    let vouch = troc_json(&a_home, &["vouch", &b_id, "--context", "Neighbour", "--days", "30"]);
    let vouch_id = vouch["id"].as_str().unwrap().to_owned();
    poll(PROPAGATION, "the vouch on b", || {
        let v = troc_json(&b_home, &["vouch", "list"]);
        (v["received"].as_array().is_some_and(|l| l.iter().any(|x| x["id"] == vouch_id.as_str()))).then_some(())
    });
    assert_eq!(code(&troc(&b_home, &["revoke", &vouch_id])), Some(5), "someone else's record: conflict");
    assert_eq!(code(&troc(&a_home, &["revoke", &"ab".repeat(32)])), Some(4), "an unknown record: not found");
    assert_eq!(code(&troc(&a_home, &["revoke", "xyz"])), Some(2), "a bad record id: usage");
    assert_eq!(code(&troc(&a_home, &["revoke", &vouch_id])), Some(0));
    assert_eq!(code(&troc(&a_home, &["rep", "not-a-peer"])), Some(2));

    // Revoking deal records: a handover b acknowledged is refused (conflict); the agreement revoked
    // by a alone is shown on b's node and erases nothing.
    assert_eq!(code(&troc(&a_home, &["revoke", &handover_id])), Some(5), "built on: conflict");
    let revoked = troc_json(&a_home, &["revoke", &deal]);
    assert_eq!(revoked["effect"], "waiting_for_other_party", "{revoked}");
    poll(PROPAGATION, "a's revocation shown on b", || {
        let v = troc_json(&b_home, &["deal", "show", &deal]);
        (v["agreement_revoked_by"].as_array().is_some_and(|l| l.len() == 1)).then_some(v)
    });
    let v = troc_json(&b_home, &["deal", "show", &deal]);
    assert_eq!(v["status"], "completed", "{v}");
    assert!(v["reviews"].as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|r| r["state"] == "revealed")), "{v}");
    let human = troc(&b_home, &["deal", "show", &deal]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("agreement revoked by"), "shown in words");

    assert_eq!(code(&troc(&a_home, &["deal", "show", &"ab".repeat(32)])), Some(4), "no such deal: not found");
    assert_eq!(code(&troc(&a_home, &["deal", "show", "xyz"])), Some(2), "a bad deal id: usage");
    assert_eq!(code(&troc(&a_home, &["deal", "accept", &deal])), Some(5), "an agreed deal: conflict");

    // Another proposal, countered by a, the counter declined by b; then b blocked and unblocked.
    let again = troc_json(&b_home, &["deal", "propose", &listing, "--days", "3", "-m", "Again?"]);
    let again = again["proposal"].as_str().expect("a proposal id").to_owned();
    poll(PROPAGATION, "the second proposal on a", || {
        (troc(&a_home, &["deal", "show", &again]).status.code() == Some(0)).then_some(())
    });
    let countered = troc_json(&a_home, &["deal", "counter", &again, "--days", "1", "-m", "One day?"]);
    let counter = countered["proposal"].as_str().expect("the counter's id").to_owned();
    let state =
        |home: &Path, id: &str| troc_json(home, &["deal", "show", id])["status"].as_str().unwrap_or("").to_owned();
    poll(PROPAGATION, "countered on b", || (state(&b_home, &counter) == "countered").then_some(()));
    troc_json(&b_home, &["deal", "decline", &counter, "--note", "Too short"]);
    poll(PROPAGATION, "declined on a", || (state(&a_home, &counter) == "declined").then_some(()));
    troc_json(&a_home, &["block", &b_id]);
    let blocked = troc_json(&a_home, &["block", "--list"]);
    assert_eq!(blocked["blocked"], json!([b_id]), "{blocked}");
    troc_json(&a_home, &["unblock", &b_id]);
    assert_eq!(troc_json(&a_home, &["block", "--list"])["blocked"], json!([]));
}
