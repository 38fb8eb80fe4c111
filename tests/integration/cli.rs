//! The real `troc` binary, as a person runs it: identity commands, exit codes, and `troc up` nodes that
//! connect over loopback and stop cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use troc_tests::troc_bin;

const LIMIT: Duration = Duration::from_secs(30);

fn troc(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(troc_bin()).arg("--home").arg(home).args(args).output().expect("troc runs")
}

/// A running `troc up`, with its stdout lines arriving on a channel.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(home: &std::path::Path, extra: &[&str]) -> Up {
        let mut child = Command::new(troc_bin())
            .arg("--home")
            .arg(home)
            .args(["up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--community", "north"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("troc up starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Up { child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing `needle`, for at most LIMIT.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {LIMIT:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    fn interrupt(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(line);
                }
                return (status, self.seen);
            }
            assert!(Instant::now() < deadline, "troc up did not stop within {LIMIT:?} of Ctrl-C");
            std::thread::sleep(Duration::from_millis(20)); // polling the exit, not synchronising
        }
    }
}

#[test]
fn identity_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = troc(&home, &["id"]);
    assert_eq!(out.status.code(), Some(4), "no identity yet: not found");
    let out = troc(&home, &["--json", "init"]);
    assert_eq!(out.status.code(), Some(0));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peer = created["identity"]["peer_id"].as_str().unwrap().to_owned();
    assert!(peer.starts_with("12D3KooW"));
    let out = troc(&home, &["init"]);
    assert_eq!(out.status.code(), Some(5), "never overwrites an identity");
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwrites"));
    let out = troc(&home, &["--json", "id"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["peer_id"], peer.as_str(), "the same identity is loaded");
    for bad in [&["up", "--community", "Not A Slug"][..], &["up", "--listen", "nonsense"], &["no-such-command"]] {
        let out = troc(&home, bad);
        assert_eq!(out.status.code(), Some(2), "usage error for {bad:?}");
    }
}

#[test]
fn troc_up_nodes_connect_and_stop_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (a_home, b_home) = (dir.path().join("a"), dir.path().join("b"));
    for h in [&a_home, &b_home] {
        assert_eq!(troc(h, &["init"]).status.code(), Some(0));
    }
    let mut a = Up::start(&a_home, &[]);
    let addr = a.wait_line("listening on").trim_start_matches("listening on ").to_owned();
    let a_peer = addr.rsplit('/').next().unwrap().to_owned();
    let mut b = Up::start(&b_home, &["--bootstrap", &addr]);
    // "listening on" is printed before any event.
    let b_peer = b.wait_line("listening on").rsplit('/').next().unwrap().to_owned();
    b.wait_line(&format!("connected to {a_peer}"));
    a.wait_line(&format!("connected to {b_peer}"));
    for (node, name) in [(b, "b"), (a, "a")] {
        let (status, lines) = node.interrupt();
        assert!(status.success(), "{name} exits 0 after Ctrl-C: {status:?} {lines:?}");
        assert!(lines.iter().any(|l| l == "shutting down"), "{name}: {lines:?}");
    }
}
