//! Crash tests: real `troc up` processes killed with SIGKILL at seeded-random moments, restarted on
//! the same home, and checked (issue 6, `docs/reliability.md` section 1).
//!
//! - Heavy ingest: while the node is killed, API clients are publishing and editing listings as
//!   fast as it answers, and an in-process peer node is serving it a catch-up of hundreds of records
//!   (of 30 authors) and gossiping listings of its own.
//! - Deals: two nodes run loans through the API (propose, accept, handover, acknowledge, return,
//!   acknowledge, complete, two blind reviews); one of them, chosen at random, is killed at a random
//!   step, just after that step was acknowledged, with its messages possibly still in flight.
//!
//! After every kill the node is restarted on the same home and: the store opens (the process comes
//! up and answers); every record acknowledged before the kill is there and verifies (read back
//! through the API, which decodes and verifies what it returns); the in-memory indexes agree with
//! the records (`GET /v1/status?check=true`: a fresh rebuild from the `log` tree compared with the
//! live indexes, see `Store::check_indexes`); and what the start-up repair found is recorded
//! (`store.open_repair`).
//!
//! `TROC_CRASH_KILLS` raises the number of kills (default 22, at least 20: 14 in the ingest test and
//! 8 in the deals test); `TROC_CRASH_SEED` changes the seed. Both tests print their figures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use troc_node::store::{ListingFilter, Outcome};
use troc_protocol::{Identity, SignedRecord};
use troc_tests::troc_bin;

use super::support;

/// How long anything may take on a slow shared machine (a functional bound, not a figure).
const LIMIT: Duration = Duration::from_secs(60);
/// The default seed (`TROC_CRASH_SEED` changes it).
const SEED: u64 = 0x7e0c_c4a5_0000_0006;
/// API clients publishing concurrently in the ingest test.
const CLIENTS: usize = 4;
/// Listing addresses each client owns (all of them stay under the live-listings quota of 200).
const ADDRESSES_PER_CLIENT: usize = 40;
/// Authors whose records the peer serves by catch-up, and new revisions per author per cycle.
const CATCHUP_AUTHORS: u32 = 30;
const CATCHUP_KEYS: u8 = 10;

/// Kills in the ingest test and in the deals test.
fn kills() -> (usize, usize) {
    let total = std::env::var("TROC_CRASH_KILLS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(22).max(20);
    let deals = (total * 4).div_ceil(11);
    (total - deals, deals)
}

fn seed() -> u64 {
    std::env::var("TROC_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(SEED)
}

/// splitmix64: a small seeded generator, so a failing run can be replayed with its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client for the local API (the test crate has no HTTP client dependency, and
// the API needs nothing more than one request per connection).

/// Where a node's API is and its token.
#[derive(Debug, Clone)]
struct Api {
    addr: String,
    token: String,
}

impl Api {
    fn read(home: &Path, addr: &str) -> Api {
        let token = std::fs::read_to_string(home.join("api.token")).expect("api.token");
        Api { addr: addr.to_owned(), token: token.trim().to_owned() }
    }

    /// One request; `Err` when the connection fails (a killed node) or the answer is not HTTP.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let mut s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(LIMIT)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(LIMIT)).map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let mut content = raw[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            content = dechunk(&content)?;
        }
        let value = if content.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&content)
                .map_err(|e| format!("bad JSON ({e}): {}", String::from_utf8_lossy(&content)))?
        };
        Ok((status, value))
    }

    /// A request that must answer 2xx.
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        match self.call(method, path, body) {
            Ok((s, v)) if (200..300).contains(&s) => v,
            other => panic!("{method} {path}: {other:?}"),
        }
    }
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..line]).trim(), 16).map_err(|e| e.to_string())?;
        data = &data[line + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("short chunk")?;
    }
}

/// Polls `check` every 25 ms until it gives a value, for at most `limit`.
fn poll<T>(limit: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    super::support::poll_blocking(limit, Duration::from_millis(25), what, check)
}

// ---------------------------------------------------------------------------------------------
// A `troc up` process.

/// A node's home and, while it runs, its `troc up` process.
struct Node {
    name: String,
    home: PathBuf,
    logs: PathBuf,
    peer_id: String,
    child: Option<Child>,
    api: Option<Api>,
    /// Its loopback p2p address (with `/p2p/`), while it runs.
    address: Option<String>,
    /// Records of other authors the running process reported stored (its `stored` events).
    others_stored: Arc<AtomicU64>,
    starts: u32,
}

impl Node {
    fn init(dir: &Path, name: &str) -> Node {
        let home = dir.join(name);
        let out = Command::new(troc_bin())
            .args(["--json", "--home"])
            .arg(&home)
            .args(["init", "--name", name, "--community", "north", "--location", "u09tv"])
            .env_remove("TROC_HOME")
            .output()
            .expect("troc init runs");
        assert!(out.status.success(), "troc init: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("init JSON");
        let peer_id = v["identity"]["peer_id"].as_str().expect("peer id").to_owned();
        Node {
            name: name.to_owned(),
            home,
            logs: dir.to_path_buf(),
            peer_id,
            child: None,
            api: None,
            address: None,
            others_stored: Arc::default(),
            starts: 0,
        }
    }

    /// Starts `troc up` on this home and waits until its API answers; returns how long that took
    /// (the store's open, with its check and repair after a kill, is most of it).
    fn start(&mut self, bootstrap: Option<&str>) -> Duration {
        assert!(self.child.is_none(), "{} is running", self.name);
        self.starts += 1;
        let stderr = std::fs::File::create(self.logs.join(format!("{}.{}.stderr", self.name, self.starts)))
            .expect("stderr file");
        let mut cmd = Command::new(troc_bin());
        cmd.arg("--home").arg(&self.home).args([
            "--json",
            "up",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ]);
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let started = Instant::now();
        let mut child = cmd
            .env_remove("TROC_HOME")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("troc up starts");
        let out = child.stdout.take().expect("stdout");
        // Only the start-up lines travel on the (bounded) channel; stored events are counted.
        let (tx, rx) = mpsc::sync_channel::<Value>(16);
        let (me, others) = (self.peer_id.clone(), self.others_stored.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                match v["event"].as_str() {
                    Some("stored") if v["author"].as_str() != Some(me.as_str()) => {
                        others.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("listening" | "api") => {
                        let _ = tx.try_send(v);
                    }
                    _ => {}
                }
            }
        });
        self.child = Some(child);
        let (mut address, mut api) = (None, None);
        let deadline = Instant::now() + LIMIT;
        while api.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = rx.recv_timeout(left).unwrap_or_else(|e| {
                let log = std::fs::read_to_string(self.logs.join(format!("{}.{}.stderr", self.name, self.starts)));
                panic!("{} did not start ({e:?}): {}", self.name, log.unwrap_or_default())
            });
            match v["event"].as_str() {
                Some("listening") => {
                    let a = v["address"].as_str().unwrap_or_default();
                    if a.contains("/127.0.0.1/tcp/") {
                        address = Some(a.to_owned());
                    }
                }
                _ => api = v["address"].as_str().map(|a| Api::read(&self.home, a)),
            }
        }
        let api = api.expect("api");
        // The API is up: the store opened (with its check and repair) before it.
        api.ok("GET", "/v1/status", None);
        let took = started.elapsed();
        self.address = address;
        self.api = Some(api);
        took
    }

    fn api(&self) -> &Api {
        self.api.as_ref().expect("running")
    }

    fn address(&self) -> &str {
        self.address.as_deref().expect("running, listening on loopback TCP")
    }

    /// SIGKILL (`Child::kill` on Unix): the process gets no chance to flush or close anything.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{} died on its own before the kill (see its stderr in {})",
            self.name,
            self.logs.display()
        );
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
        self.api = None;
        self.address = None;
    }

    /// A clean stop (SIGTERM): exit 0.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(20)); // polling the exit, not synchronising
        };
        assert!(status.success(), "{}: {status}", self.name);
        self.api = None;
    }

    /// The store's start-up repair report, and the index check (which must be clean).
    fn check_store(&self, when: &str) -> (Value, Value) {
        let status = self.api().ok("GET", "/v1/status?check=true", None);
        let check = status["store"]["check"].clone();
        for field in ["unreadable", "inconsistent", "bad_markers", "differences", "search_differences"] {
            assert_eq!(check[field], 0, "{} {when}: the indexes disagree with the records: {check:#}", self.name);
        }
        (status["store"]["open_repair"].clone(), check)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Figures of a series of restarts.
#[derive(Debug, Default)]
struct Figures {
    kills: usize,
    reopen: Vec<Duration>,
    repairs: usize,
    corrupt_removed: u64,
    inconsistent_removed: u64,
    check_ms: Vec<u64>,
}

impl Figures {
    fn restarted(&mut self, took: Duration, open_repair: &Value, check: &Value) {
        self.reopen.push(took);
        if open_repair.is_object() {
            self.repairs += 1;
            self.corrupt_removed += open_repair["corrupt_removed"].as_u64().unwrap_or(0);
            self.inconsistent_removed += open_repair["inconsistent_removed"].as_u64().unwrap_or(0);
        }
        self.check_ms.push(check["millis"].as_u64().unwrap_or(0));
    }

    fn summary(&self) -> String {
        let mut r = self.reopen.clone();
        r.sort();
        let ms = |d: Option<&Duration>| d.map_or(0, |d| d.as_millis());
        format!(
            "kills {}, restarts {}, start-up repairs {}, corrupt records removed {}, inconsistent records removed {}, \
             time to reopen (process start to API answering) median {} ms, max {} ms, index check max {} ms",
            self.kills,
            r.len(),
            self.repairs,
            self.corrupt_removed,
            self.inconsistent_removed,
            ms(r.get(r.len() / 2)),
            ms(r.last()),
            self.check_ms.iter().max().copied().unwrap_or(0)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Heavy ingest

/// What was acknowledged for one listing address: its revision and record id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Acked {
    revision: u64,
    id: String,
}

/// One API client: publishes or edits (a new revision of) a random one of its addresses, as fast
/// as the node answers, until told to stop or the node dies. Records what the node acknowledged.
fn client(
    api: Api,
    n: usize,
    mut rng: Rng,
    acked: Arc<Mutex<HashMap<String, Acked>>>,
    mine: Arc<Mutex<Vec<Option<String>>>>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let slot = n * ADDRESSES_PER_CLIENT + rng.range(0, ADDRESSES_PER_CLIENT as u64) as usize;
        let address = mine.lock().expect("lock")[slot].clone();
        let title = format!("Crash-test item {slot}, draw {}", rng.next() % 1_000_000);
        let result = match &address {
            None => api.call(
                "POST",
                "/v1/listings",
                Some(&json!({"kind": "lend", "category": "tools", "title": title, "tags": ["crash"],
                             "terms": {"max_loan_days": 3}})),
            ),
            Some(a) => api.call("PATCH", &format!("/v1/listings/{a}"), Some(&json!({ "title": title }))),
        };
        match result {
            Ok((s, v)) if (200..300).contains(&s) => {
                let address = v["address"].as_str().expect("address").to_owned();
                let a = Acked {
                    revision: v["revision"].as_u64().expect("revision"),
                    id: v["id"].as_str().expect("id").into(),
                };
                mine.lock().expect("lock")[slot] = Some(address.clone());
                acked.lock().expect("lock").insert(address, a);
                count.fetch_add(1, Ordering::Relaxed);
            }
            // Refused while the node is up: a bug, whatever the moment.
            Ok((s, v)) => panic!("client {n}: the node answered {s}: {v}"),
            // The node was killed: what was in flight is unacknowledged.
            Err(_) => return,
        }
    }
}

/// Checks every acknowledged address after a restart: its current revision is the acknowledged
/// one (same id) or the one that was in flight when the node died (revision + 1, never more: each
/// client has one request in flight). One `GET /v1/mine`, which decodes and verifies every record
/// it returns (and leaves out, with a warning, any that does not). A listing created by a request
/// the kill cut short, stored but never acknowledged, is adopted by its client (its title names
/// its slot), so the clients never create more addresses than they own.
fn verify_acked(api: &Api, acked: &mut HashMap<String, Acked>, mine: &mut [Option<String>]) -> usize {
    let listed = api.ok("GET", "/v1/mine", None);
    let mut current: HashMap<String, (u64, String, String)> = HashMap::new();
    for l in listed["listings"].as_array().expect("listings") {
        let address = l["address"].as_str().expect("address").to_owned();
        let revision = l["revision"].as_u64().expect("revision");
        let (id, title) = (l["id"].as_str().expect("id").to_owned(), l["title"].as_str().unwrap_or("").to_owned());
        current.insert(address, (revision, id, title));
    }
    let mut ahead = 0;
    for (address, a) in acked.iter_mut() {
        let Some((revision, id, _)) = current.get(address) else {
            panic!("acknowledged listing {address} (revision {}, {}) is gone", a.revision, a.id)
        };
        if *revision == a.revision {
            assert_eq!(id, &a.id, "{address}: another record under the acknowledged revision");
        } else {
            assert_eq!(*revision, a.revision + 1, "{address}: acknowledged revision {} lost", a.revision);
            ahead += 1;
            // Seen on disk after the restart: the baseline from now on.
            *a = Acked { revision: *revision, id: id.clone() };
        }
    }
    for (address, (revision, id, title)) in current {
        if acked.contains_key(&address) {
            continue;
        }
        let slot = title
            .strip_prefix("Crash-test item ")
            .and_then(|t| t.split(',').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("a listing no client made: {title:?}"));
        assert!(mine[slot].is_none(), "slot {slot} has two addresses");
        mine[slot] = Some(address.clone());
        acked.insert(address, Acked { revision, id });
    }
    ahead
}

/// The peer's catch-up material for a cycle: a new revision of each of `CATCHUP_KEYS` listings
/// of each of `CATCHUP_AUTHORS` authors (new records, while the live listings stay bounded).
fn catchup_batch(cycle: u32) -> Vec<SignedRecord> {
    let mut out = Vec::new();
    for a in 0..CATCHUP_AUTHORS {
        let who = support::person(5000 + a);
        for k in 0..CATCHUP_KEYS {
            let l = support::listing(k, cycle + 1, "north", &format!("Catch-up item {a}/{k} cycle {cycle}"));
            out.push(support::sign_listing(&who, l).into_any());
        }
    }
    out
}

#[test]
fn killed_during_heavy_ingest_the_node_keeps_every_acknowledged_record() {
    let (kill_count, _) = kills();
    let seed = seed();
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let peer = rt.block_on(support::spawn(4999, &["north"], &[]));
    let peer_addr = rt
        .block_on(peer.handle.dial_addrs())
        .expect("addrs")
        .into_iter()
        .map(|a| a.to_string())
        .find(|a| a.contains("/127.0.0.1/tcp/"))
        .expect("a loopback TCP address");
    let peer_store = peer.handle.store().clone();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::init(dir.path(), "ingest");
    let acked: Arc<Mutex<HashMap<String, Acked>>> = Arc::default();
    let mine: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; CLIENTS * ADDRESSES_PER_CLIENT]));
    let mut figures = Figures::default();
    let (mut acks_total, mut ahead_total, mut peer_stored_before_kills) = (0u64, 0usize, 0u64);
    let mut peer_key_revisions = [0u32; 100];
    let mut peer_listing_seq = 0u64;

    for cycle in 0..kill_count as u32 {
        // New catch-up material on the peer, then the node: restarted on its home, not connected yet.
        let batch = catchup_batch(cycle);
        let outcomes = peer_store.apply(&batch, support::now()).expect("peer store");
        assert!(outcomes.iter().all(Outcome::is_stored), "{outcomes:?}");
        let took = node.start(None);
        let api = node.api().clone();
        if cycle > 0 {
            ahead_total += verify_acked(&api, &mut acked.lock().expect("lock"), &mut mine.lock().expect("lock"));
        }
        let (open_repair, check) = node.check_store(&format!("after restart {cycle}"));
        if cycle > 0 {
            assert!(open_repair.is_object(), "the open after a kill checks and repairs: {open_repair}");
            figures.restarted(took, &open_repair, &check);
        }

        // Heavy ingest: the clients, the catch-up the connection starts, the peer's gossip.
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (api, acked, mine, count, stop) =
                    (api.clone(), acked.clone(), mine.clone(), count.clone(), stop.clone());
                let rng = Rng(rng.next());
                std::thread::spawn(move || client(api, n, rng, acked, mine, count, stop))
            })
            .collect();
        let connect = {
            let (api, addr) = (api.clone(), peer_addr.clone());
            // Answers once connected, or fails when the node is killed first.
            std::thread::spawn(move || api.call("POST", "/v1/peers", Some(&json!({ "address": addr }))))
        };
        let gossip = {
            let (handle, stop) = (peer.handle.clone(), stop.clone());
            let mut revisions = peer_key_revisions;
            let mut seq = peer_listing_seq;
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let k = (seq % 100) as usize;
                    seq += 1;
                    revisions[k] += 1;
                    let l = support::listing(100 + k as u8, revisions[k], "north", &format!("Peer item {k}"));
                    if handle.sign_and_publish(l).await.is_err() {
                        break;
                    }
                }
                (revisions, seq)
            })
        };

        // The kill: once a seeded-random number of publishes were acknowledged in this cycle.
        let target = rng.range(5, 40);
        poll(LIMIT, "acknowledged publishes", || (count.load(Ordering::Relaxed) >= target).then_some(()));
        peer_stored_before_kills += node.others_stored.swap(0, Ordering::Relaxed);
        node.kill();
        figures.kills += 1;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
        let _ = connect.join().expect("connect thread");
        (peer_key_revisions, peer_listing_seq) = rt.block_on(gossip).expect("gossip task");
        acks_total += count.load(Ordering::Relaxed);
    }

    // The last restart: everything acknowledged is there, the node catches up on everything the
    // peer has, and after all that ingest the live indexes still agree with the records.
    let took = node.start(Some(&peer_addr));
    let api = node.api().clone();
    ahead_total += verify_acked(&api, &mut acked.lock().expect("lock"), &mut mine.lock().expect("lock"));
    let (open_repair, check) = node.check_store("after the last restart");
    figures.restarted(took, &open_repair, &check);
    let mut authors: Vec<Identity> = (0..CATCHUP_AUTHORS).map(|a| support::person(5000 + a)).collect();
    authors.push(peer.identity.clone());
    for who in &authors {
        let filter = ListingFilter { author: Some(*who.public()), ..ListingFilter::default() };
        let want = peer_store.listings(&filter, support::now()).expect("peer listings").len();
        let path = format!("/v1/search?author={}&limit=1", who.public());
        let what = format!("the node caught up with the peer: {want} listings of {}", who.public());
        poll(LIMIT, &what, || {
            let got = api.ok("GET", &path, None)["total"].as_u64();
            (got == Some(want as u64)).then_some(())
        });
    }
    let (_, last_check) = node.check_store("after catching up");
    let live_mine = acked.lock().expect("lock").len();
    for (address, a) in acked.lock().expect("lock").iter() {
        // Read by id too where the acknowledged revision is current: the record itself, verified.
        let v = api.ok("GET", &format!("/v1/listings/{address}"), None);
        if v["revision"].as_u64() == Some(a.revision) {
            assert_eq!(api.ok("GET", &format!("/v1/listings/{}", a.id), None)["id"], a.id.as_str());
        }
    }
    node.stop();
    rt.block_on(peer.handle.shutdown()).expect("peer shutdown");
    println!(
        "crash/ingest seed {seed:#x}: {}; publishes acknowledged {acks_total} over {live_mine} addresses, all found \
         ({ahead_total} times the in-flight revision too); records of other authors stored just before the kills \
         {peer_stored_before_kills}; final store {} records, index check clean",
        figures.summary(),
        last_check["records"]
    );
}

// ---------------------------------------------------------------------------------------------
// Deals

/// The ids of a deal's records as a node shows them, sorted, with its status.
fn deal_state(api: &Api, deal: &str) -> Option<(String, Vec<String>, Vec<String>)> {
    let (s, v) = api.call("GET", &format!("/v1/deals/{deal}"), None).ok()?;
    if s != 200 {
        return None;
    }
    let mut ids: Vec<String> = v["records"]
        .as_array()?
        .iter()
        .filter_map(|r| r["id"].as_str().or_else(|| r[0].as_str()).map(str::to_owned))
        .collect();
    ids.sort();
    let mut reviews: Vec<String> = v["reviews"]
        .as_array()
        .map(|l| l.iter().map(|r| format!("{}>{} {}", r["author"], r["subject"], r["state"])).collect())
        .unwrap_or_default();
    reviews.sort();
    Some((v["status"].as_str()?.to_owned(), ids, reviews))
}

/// Waits until both nodes show the deal with the same status, records and reviews.
fn agree(a: &Api, b: &Api, deal: &str, what: &str) -> (String, Vec<String>, Vec<String>) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (x, y) = (deal_state(a, deal), deal_state(b, deal));
        if let (Some(x), Some(y)) = (&x, &y)
            && x == y
        {
            return x.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}: lender {x:?}, borrower {y:?}"
        );
        std::thread::sleep(Duration::from_millis(25)); // a poll interval inside a bounded wait
    }
}

#[test]
fn killed_during_deals_both_sides_finish_in_the_same_state() {
    let (_, kill_count) = kills();
    let seed = seed() ^ 0xdea1;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = [Node::init(dir.path(), "lender"), Node::init(dir.path(), "borrower")];
    nodes[0].start(None);
    let a_addr = nodes[0].address().to_owned();
    nodes[1].start(Some(&a_addr));
    let listing = nodes[0].api().ok(
        "POST",
        "/v1/listings",
        Some(&json!({"kind": "lend", "category": "tools", "title": "Ladder", "terms": {"max_loan_days": 3}})),
    );
    let listing = listing["id"].as_str().expect("listing id").to_owned();
    poll(LIMIT, "the listing on the borrower's node", || {
        matches!(nodes[1].api().call("GET", &format!("/v1/listings/{listing}"), None), Ok((200, _))).then_some(())
    });

    // The steps of a loan: who acts (0 lender, 1 borrower) and what.
    const STEPS: [(usize, &str); 9] = [
        (1, "propose"),
        (0, "accept"),
        (0, "handover"),
        (1, "acknowledge"),
        (1, "return"),
        (0, "acknowledge"),
        (0, "complete"),
        (0, "review"),
        (1, "review"),
    ];
    let mut figures = Figures::default();
    let mut acked_records = 0usize;
    let mut victims = [0usize; 2];
    for round in 0..kill_count {
        let kill_after = rng.range(0, STEPS.len() as u64) as usize;
        let victim = rng.range(0, 2) as usize;
        let mut deal = String::new();
        // Records each node acknowledged for this deal.
        let mut acked: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for (i, &(actor, step)) in STEPS.iter().enumerate() {
            let api = nodes[actor].api().clone();
            match step {
                "propose" => {
                    // The round in the message: two rounds can start within the same second, and the
                    // same proposal signed in the same second is the same record (the same deal).
                    let body = json!({"listing": listing, "days": 2, "message": format!("Round {round}")});
                    let v = api.ok("POST", "/v1/deals", Some(&body));
                    deal = v["proposal"].as_str().expect("proposal").to_owned();
                    acked[actor].push(deal.clone());
                }
                "accept" => {
                    let d = deal.clone();
                    poll(LIMIT, "the proposal on the lender's node", || {
                        matches!(api.call("GET", &format!("/v1/deals/{d}"), None), Ok((200, _))).then_some(())
                    });
                    let v = api.ok("POST", &format!("/v1/deals/{deal}/accept"), None);
                    assert_eq!(v["agreed"], true, "{v}");
                    deal = v["agreement"].as_str().expect("agreement").to_owned();
                    acked[actor].push(deal.clone());
                }
                "review" => {
                    let v = api.ok(
                        "POST",
                        &format!("/v1/deals/{deal}/review"),
                        Some(&json!({"rating": "positive", "text": format!("Round {round}, fine")})),
                    );
                    acked[actor].push(v["commitment"].as_str().expect("commitment").to_owned());
                }
                s => {
                    let v = api.ok("POST", &format!("/v1/deals/{deal}/{s}"), Some(&json!({})));
                    acked[actor].push(v["record"]["id"].as_str().expect("record id").to_owned());
                }
            }
            if i == kill_after {
                // The kill: just after the step was acknowledged, its messages possibly in flight.
                nodes[victim].kill();
                figures.kills += 1;
                victims[victim] += 1;
                let other = nodes[1 - victim].address().to_owned();
                let took = nodes[victim].start(Some(&other));
                let api = nodes[victim].api().clone();
                if !acked[victim].is_empty() {
                    let (_, ids, _) = poll(LIMIT, "the deal on the restarted node", || deal_state(&api, &deal));
                    for id in &acked[victim] {
                        assert!(
                            ids.contains(id),
                            "{}: acknowledged deal record {id} lost: {ids:?}",
                            nodes[victim].name
                        );
                    }
                }
                acked_records += acked[victim].len();
                let (open_repair, check) = nodes[victim].check_store(&format!("after kill {round}"));
                assert!(open_repair.is_object(), "{open_repair}");
                figures.restarted(took, &open_repair, &check);
            }
            // The step reached the other party (through the outbox after a restart).
            agree(nodes[0].api(), nodes[1].api(), &deal, &format!("round {round}: both sides after {step}"));
        }
        let (status, ids, reviews) = poll(LIMIT, "both reviews revealed on both sides", || {
            let s = agree(nodes[0].api(), nodes[1].api(), &deal, "the same deal on both sides");
            (s.2.len() == 2 && s.2.iter().all(|r| r.ends_with("\"revealed\""))).then_some(s)
        });
        assert_eq!(status, "completed", "round {round}: {ids:?} {reviews:?}");
        for n in &nodes {
            n.check_store(&format!("after round {round}"));
        }
    }
    for n in &mut nodes {
        n.stop();
    }
    println!(
        "crash/deals seed {seed:#x}: {} deals completed, both sides agreeing; {}; victims lender {} borrower {}; \
         acknowledged deal records checked after restarts {acked_records}, all found",
        kill_count,
        figures.summary(),
        victims[0],
        victims[1]
    );
}
