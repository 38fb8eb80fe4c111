//! `troc demo` end to end, with the real binary: a neighbourhood set up and checked then stopped
//! (`--exit-after-setup`, then again with `--keep`), and a running neighbourhood explored with
//! `troc search` and `troc mine` from "another terminal", then stopped with SIGTERM (exit 0).
//!
//! Also [`Proc`], a child process with its stdout lines on a channel and killed when dropped, which
//! the bot test uses too. Nothing sleeps to synchronise: waits read lines with a deadline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use troc_tests::troc_bin;

/// How long a demo may take to set up, or a node to answer, on a slow shared machine.
pub(crate) const LIMIT: Duration = Duration::from_secs(120);

/// A child process whose stdout lines arrive on a channel, and whose stderr goes to a file printed
/// if the test fails. Killed when dropped.
pub(crate) struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
    name: String,
    stderr: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &str, mut cmd: Command, logs: &Path) -> Proc {
        let stderr = logs.join(format!("{name}.stderr"));
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = cmd.stdout(Stdio::piped()).stderr(file).spawn().expect("the process starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, seen: Vec::new(), name: name.to_owned(), stderr }
    }

    /// `troc --home HOME ARGS`.
    pub(crate) fn troc(name: &str, home: &Path, args: &[&str], logs: &Path) -> Proc {
        let mut cmd = Command::new(troc_bin());
        cmd.arg("--home").arg(home).args(args).env_remove("TROC_HOME").env("RUST_LOG", "warn");
        Proc::spawn(name, cmd, logs)
    }

    /// Waits for a JSON line satisfying `pred`, for at most `limit`.
    pub(crate) fn wait_json(&mut self, limit: Duration, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && pred(&v)
                    {
                        return v;
                    }
                }
                Err(e) => panic!("{}: no line {what} within {limit:?} ({e:?}); saw {:#?}", self.name, self.seen),
            }
        }
    }

    /// Waits for an NDJSON line whose `event` is `kind`.
    pub(crate) fn wait_event(&mut self, kind: &str) -> Value {
        self.wait_json(LIMIT, &format!("with event {kind:?}"), |v| v["event"] == kind)
    }

    /// Reads every line until stdout closes, then returns the exit status.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("{} did not exit within {LIMIT:?}", self.name),
            }
        }
        // Stdout is closed: the process is exiting.
        self.child.wait().expect("wait")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed");
        self.wait_exit()
    }

    /// The JSON lines seen so far whose `event` is `kind`.
    pub(crate) fn events(&self, kind: &str) -> Vec<Value> {
        self.seen.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["event"] == kind).collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- {} stderr (last lines) ---\n{}", self.name, tail.join("\n"));
        }
    }
}

/// Runs `troc --json --home HOME ARGS`, expects exit 0 and returns its JSON.
fn troc_json(home: &Path, args: &[&str]) -> Value {
    let out = Command::new(troc_bin())
        .arg("--json")
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("TROC_HOME")
        .output()
        .expect("troc runs");
    assert!(
        out.status.success(),
        "troc {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("troc {args:?} printed no JSON: {e}"))
}

/// Checks a finished setup: every published listing reached every other node, and the summary says
/// every node has all of them.
fn assert_converged(demo: &Proc, nodes: usize, listings: usize) {
    let summary = demo.events("summary");
    let summary = summary.first().unwrap_or_else(|| panic!("no summary in {:#?}", demo.seen));
    assert_eq!(summary["nodes"], nodes, "{summary}");
    assert_eq!(summary["listings"], listings, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    for p in demo.events("published") {
        assert_eq!(p["reached"], p["of"], "{p}");
    }
}

#[test]
fn demo_sets_up_a_neighbourhood_that_converges_and_keeps_it_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, logs) = (dir.path().join("home"), dir.path());
    // Something of the person's own in the home: the demo must not touch it.
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(home.join("troc.toml"), "name = \"Me\"\n").expect("troc.toml");

    let mut demo = Proc::troc("demo", &home, &["--json", "demo", "--nodes", "3", "--exit-after-setup"], logs);
    let status = demo.wait_exit();
    assert!(status.success(), "demo exited with {status}; saw {:#?}", demo.seen);
    assert_eq!(demo.events("node_started").len(), 3);
    assert_eq!(demo.events("published").len(), 6, "an offer and a want each");
    assert_converged(&demo, 3, 6);
    assert_eq!(demo.events("found").len(), 3, "every neighbour's node finds an offer for their want");
    assert_eq!(demo.events("ready").len(), 1);
    assert_eq!(demo.events("stopped").len(), 1);
    for name in ["alice", "bruno", "chloe"] {
        let node = home.join("demo").join(name);
        assert!(node.join("identity.key").exists(), "{name} has an identity");
        assert!(!node.join("api.json").exists(), "{name}'s API stopped cleanly");
    }
    assert_eq!(std::fs::read_to_string(home.join("troc.toml")).expect("troc.toml"), "name = \"Me\"\n");

    // --keep: the same people and listings, nothing published again.
    let alice_key = std::fs::read(home.join("demo/alice/identity.key")).expect("key");
    let mut again =
        Proc::troc("demo-keep", &home, &["--json", "demo", "--nodes", "3", "--exit-after-setup", "--keep"], logs);
    let status = again.wait_exit();
    assert!(status.success(), "demo --keep exited with {status}; saw {:#?}", again.seen);
    assert_eq!(again.events("kept").first().map(|k| k["listings"].clone()), Some(Value::from(6)), "{:#?}", again.seen);
    assert!(again.events("published").is_empty());
    assert_converged(&again, 3, 6);
    assert_eq!(std::fs::read(home.join("demo/alice/identity.key")).expect("key"), alice_key);

    // Without --keep the previous demo is wiped: new people.
    let mut fresh = Proc::troc("demo-fresh", &home, &["--json", "demo", "--nodes", "2", "--exit-after-setup"], logs);
    assert!(fresh.wait_exit().success(), "{:#?}", fresh.seen);
    assert_ne!(std::fs::read(home.join("demo/alice/identity.key")).expect("key"), alice_key);
    assert!(!home.join("demo/chloe").exists(), "the previous demo's data is gone");
    assert!(home.join("troc.toml").exists());
}

#[test]
fn a_running_demo_answers_other_commands_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let mut demo = Proc::troc("demo", &home, &["--json", "demo", "--nodes", "3"], dir.path());
    let ready = demo.wait_event("ready");
    assert_eq!(ready["complete"], true, "{ready}");
    let nodes = ready["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    let bruno = PathBuf::from(nodes[1]["home"].as_str().expect("home"));
    assert_eq!(bruno, home.join("demo/bruno"));
    assert!(ready["try"].as_array().is_some_and(|t| t.iter().any(|c| c.as_str().is_some_and(|c| c.contains("bruno")))));

    // "Another terminal": Bruno finds Alice's drill, and sees his own listings.
    let found = troc_json(&bruno, &["search", "drill"]);
    let titles: Vec<&str> =
        found["listings"].as_array().expect("listings").iter().filter_map(|l| l["title"].as_str()).collect();
    assert!(titles.contains(&"Cordless drill"), "{found}");
    let mine = troc_json(&bruno, &["mine"]);
    assert_eq!(mine["listings"].as_array().map(Vec::len), Some(2), "{mine}");

    // A listing published from there is reported as it spreads.
    let added = troc_json(&bruno, &["offer", "add", "give", "Box of jam jars", "--category", "kitchen"]);
    let id = added["id"].as_str().or_else(|| added["listing"]["id"].as_str()).expect("the new listing's id").to_owned();
    let live = demo.wait_json(LIMIT, "reporting the new listing", |v| v["event"] == "live_published" && v["id"] == id);
    assert_eq!(live["reached"], 2, "{live}");
    assert_eq!(live["name"], "Bruno");

    let status = demo.terminate();
    assert!(status.success(), "demo exited with {status} after SIGTERM; saw {:#?}", demo.seen);
    assert_eq!(demo.events("stopped").len(), 1);
    for name in ["alice", "bruno", "chloe"] {
        assert!(!home.join("demo").join(name).join("api.json").exists(), "{name}'s API stopped cleanly");
    }
}
