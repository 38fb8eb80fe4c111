//! The example bot (`examples/bot.py`) against two real `troc up` nodes on loopback: it offers a
//! ladder on one node, a matching want is published on the other, and the bot reports the match and
//! exits 0. Also its clear failures: no node running (exit 3) and a wrong token (exit 1).
//!
//! Skipped, with the reason printed, only when `python3` is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use troc_tests::troc_bin;

use super::demo::{LIMIT, Proc};

fn bot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join("examples/bot.py")
}

fn python() -> Option<&'static str> {
    Command::new("python3").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| "python3")
}

fn bot(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(bot_path()).arg("--home").arg(home).args(args).env_remove("TROC_HOME");
    cmd
}

/// Runs `troc --json --home HOME ARGS` and returns its JSON (exit 0 expected).
fn troc_json(home: &Path, args: &[&str]) -> Value {
    let out = Command::new(troc_bin()).arg("--json").arg("--home").arg(home).args(args).output().expect("troc runs");
    assert!(
        out.status.success(),
        "troc {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// `troc up` on loopback, the API on a free port, following `bot-test`; waits for its API.
fn up(name: &str, home: &Path, bootstrap: Option<&str>, logs: &Path) -> (Proc, String) {
    troc_json(home, &["init", "--name", name, "--community", "bot-test", "--location", "u09tv"]);
    let mut args = vec!["--json", "up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    let mut node = Proc::troc(name, home, &args, logs);
    let listening = node.wait_json(LIMIT, "listening on TCP", |v| {
        v["event"] == "listening" && v["address"].as_str().is_some_and(|a| a.contains("/tcp/"))
    });
    node.wait_event("api");
    (node, listening["address"].as_str().expect("address").to_owned())
}

#[test]
fn the_example_bot_offers_and_reports_a_matching_want_from_another_node() {
    if python().is_none() {
        eprintln!(
            "SKIPPED the_example_bot_offers_and_reports_a_matching_want_from_another_node: python3 is not installed"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (ann_home, ben_home, logs) = (dir.path().join("ann"), dir.path().join("ben"), dir.path());

    // Without a node, the bot says so and exits 3.
    let out = bot(&ann_home, &["--timeout", "5"]).output().expect("python3 runs");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("troc up"));

    let (mut ann, ann_addr) = up("Ann", &ann_home, None, logs);
    let (mut ben, _) = up("Ben", &ben_home, Some(&ann_addr), logs);
    ben.wait_event("peer_connected");

    // A wrong token is refused: exit 1 and a clear message.
    let out = bot(&ann_home, &["--token", &"0".repeat(64), "--timeout", "5"]).output().expect("python3 runs");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{}", String::from_utf8_lossy(&out.stderr));

    let mut bot = Proc::spawn(
        "bot",
        bot(
            &ann_home,
            &["--title", "Aluminium ladder, 3 m", "--tag", "ladder", "--max-matches", "1", "--timeout", "120"],
        ),
        logs,
    );
    let ready = bot.wait_json(LIMIT, "ready", |v| v["ready"] == true);
    let offer = ready["offer"].as_str().expect("offer id").to_owned();
    assert!(ready["words"].as_array().is_some_and(|w| w.contains(&Value::from("ladder"))), "{ready}");

    // Ben publishes an unrelated want, then a matching one, through his node's API.
    troc_json(&ben_home, &["want", "add", "Italian lessons", "--category", "lessons"]);
    let want = troc_json(&ben_home, &["want", "add", "Ladder to clean the gutters", "--category", "tools"]);
    let want_id = want["id"].as_str().or_else(|| want["listing"]["id"].as_str()).expect("want id").to_owned();

    let matched = bot.wait_json(LIMIT, "a match", |v| v.get("matched").is_some());
    assert_eq!(matched["matched"], want_id.as_str(), "{matched}");
    assert_eq!(matched["offer"], offer.as_str(), "{matched}");
    assert_eq!(matched["author"], "Ben", "{matched}");
    let status = bot.wait_exit();
    assert!(status.success(), "the bot exited with {status}; saw {:#?}", bot.seen);
    assert_eq!(bot.seen.iter().filter(|l| l.contains("\"matched\"")).count(), 1, "only the ladder matched");

    // The bot's offer reaches Ben's node too (polled with a deadline).
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let found = troc_json(&ben_home, &["search", "ladder", "--kind", "lend"]);
        if found["listings"].as_array().is_some_and(|l| l.iter().any(|x| x["id"] == offer.as_str())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the offer never reached Ben's node: {found}");
        std::thread::sleep(std::time::Duration::from_millis(200)); // a poll interval inside a bounded wait
    }

    assert!(ben.terminate().success());
    assert!(ann.terminate().success());
}
