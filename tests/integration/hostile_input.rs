//! The hostile input table for the local API and the command line (`docs/reliability.md`, sections 6.2
//! and 6.3): each row is one hostile input, the exact error it must get (HTTP status and JSON error
//! code, or CLI exit code, plus a message fragment) and where the node counts the refusal. After the
//! table, the node must still answer and nothing may be lost: every record stored before it is still
//! there, byte for byte, and verifies; the counts moved only by what the table legitimately added.
//!
//! The API rows talk raw HTTP/1.1 over a TCP socket, so the test can send what no well-behaved client
//! would (invalid UTF-8, a `../` path, a body over the limit, a client that never reads). The CLI rows
//! run the real `troc` binary against a real node's API (the in-process node writes `api.json` and
//! `api.token` in its home, exactly as `troc up` does).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use troc_node::api::{
    self, ApiConfig, ApiServer, LocalProfile, MAX_BODY_BYTES, MAX_CONCURRENT_REQUESTS, MAX_EVENT_STREAMS,
};
use troc_node::metrics::Source;
use troc_protocol::{Identity, RecordId, Signed};
use troc_tests::troc_bin;

use super::support::{self, TestNode};

/// A bound on every single exchange: the node must answer each hostile request well within it.
const LIMIT: Duration = Duration::from_secs(20);
const COMMUNITY: &str = "hostile-test";

/// A node with its API on a free loopback port.
struct Target {
    node: TestNode,
    server: Option<ApiServer>,
    addr: SocketAddr,
    token: String,
}

impl Target {
    async fn start(n: u32) -> Target {
        let node = support::spawn(n, &[COMMUNITY], &[]).await;
        let mut cfg = ApiConfig::new(
            node.home.path().to_path_buf(),
            LocalProfile {
                name: format!("Hostile {n}"),
                community: Some(COMMUNITY.into()),
                location: Some("u09tv".into()),
            },
        );
        cfg.addr = "127.0.0.1:0".parse().expect("addr");
        let server = api::serve(node.handle.clone(), cfg).await.expect("the API starts");
        let addr = server.local_addr();
        let token = api::read_token(node.home.path()).expect("token");
        // The API publishes the profile in the background: wait for it, so the counts taken before
        // the table do not move under it.
        let me = *node.identity.public();
        let store = node.handle.store().clone();
        support::wait_until(LIMIT, "the profile is stored", || {
            let found = store.profile(&me).ok().flatten().is_some();
            async move { found }
        })
        .await;
        Target { node, server: Some(server), addr, token }
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.node.handle.shutdown().await.expect("clean shutdown");
    }

    fn store(&self) -> &troc_node::store::Store {
        self.node.handle.store()
    }

    /// A request with the right token and a JSON body.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = Req::new(method, path).auth(Auth::Token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let reply = send(self, &req).await;
        (reply.status, reply.body)
    }

    /// Ids and exact bytes of every stored record.
    fn snapshot(&self) -> Vec<(RecordId, Vec<u8>)> {
        let store = self.store();
        store
            .all_ids()
            .map(|id| {
                let id = id.expect("id");
                let rec = store.get(&id).expect("read").expect("stored record is there");
                (id, rec.bytes().to_vec())
            })
            .collect()
    }
}

/// Which `Authorization` header a request carries.
#[derive(Debug, Clone, PartialEq)]
enum Auth {
    None,
    Token,
    Header(String),
}

/// A raw HTTP request.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    auth: Auth,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

impl Req {
    fn new(method: &str, path: &str) -> Req {
        Req { method: method.into(), path: path.into(), auth: Auth::Token, content_type: None, body: Vec::new() }
    }
    fn auth(mut self, auth: Auth) -> Req {
        self.auth = auth;
        self
    }
    fn json(self, v: &Value) -> Req {
        self.raw_json(v.to_string().into_bytes())
    }
    fn raw_json(mut self, body: Vec<u8>) -> Req {
        self.content_type = Some("application/json");
        self.body = body;
        self
    }
    fn typed(mut self, content_type: &'static str, body: Vec<u8>) -> Req {
        self.content_type = Some(content_type);
        self.body = body;
        self
    }

    fn bytes(&self, target: &Target) -> Vec<u8> {
        let mut head =
            format!("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.method, self.path, target.addr);
        match &self.auth {
            Auth::None => {}
            Auth::Token => head.push_str(&format!("Authorization: Bearer {}\r\n", target.token)),
            Auth::Header(h) => head.push_str(&format!("Authorization: {h}\r\n")),
        }
        if let Some(ct) = self.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if !self.body.is_empty() || self.method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    text: String,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

/// Sends one request on a fresh connection and reads the whole answer (`Connection: close`).
async fn send(target: &Target, req: &Req) -> Reply {
    tokio::time::timeout(LIMIT, exchange(target.addr, req.bytes(target)))
        .await
        .unwrap_or_else(|_| panic!("no answer to {} {} within {LIMIT:?}", req.method, req.path))
}

async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // Written concurrently with the read: the server may answer (413) before reading the whole body.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut raw = Vec::new();
    let _ = rd.read_to_end(&mut raw).await;
    drop(writer.await);
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw[..raw.len().min(200)]));
    });
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body).to_string();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Reply { status, body, text }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An error: HTTP status, the API's code, a fragment of the message; counted in
    /// `metrics.api_refused[code]`.
    Error(u16, &'static str, &'static str),
    /// An import answered 200 whose one record is rejected with this protocol code, counted in
    /// `metrics.rejected.local[code]`.
    ImportRejected(&'static str),
    /// An import answered 200 whose one record was already stored (a forged copy of it): `duplicate`,
    /// counted in `metrics.outcomes.local.duplicate`.
    ImportDuplicate,
    /// Refused by the HTTP parser before the API sees it: a bare status, no JSON body, not counted.
    Bare(u16),
}

fn listing_body(title: &str) -> Value {
    json!({"kind": "lend", "category": "tools", "title": title, "description": "Hostile input table fixture"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

/// A listing signed by `identity`, as the hex an import takes.
fn foreign_listing(identity: &Identity, key: u8, title: &str) -> Signed<troc_protocol::Listing> {
    support::sign_listing(identity, support::listing(key, 1, COMMUNITY, title))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_api_inputs_get_clear_errors_are_counted_and_lose_nothing() {
    let t = Target::start(61).await;
    let now = support::now();

    // Fixtures: two listings of our own through the API, and one of another person imported.
    let (s, mine) = t.call("POST", "/v1/listings", Some(listing_body("Cordless drill"))).await;
    assert_eq!(s, 201, "{mine}");
    let mine_id = mine["id"].as_str().expect("id").to_owned();
    let (s, _) = t.call("POST", "/v1/listings", Some(listing_body("Garden ladder"))).await;
    assert_eq!(s, 201);
    let other = support::person(62);
    let theirs = foreign_listing(&other, 7, "Their wheelbarrow");
    let theirs_id = theirs.id().to_string();
    let (s, r) = t.call("POST", "/v1/import", Some(json!({"records": [hex::encode(theirs.bytes())]}))).await;
    assert_eq!((s, r["stored"].as_u64()), (200, Some(1)), "{r}");

    let before = t.snapshot();
    let records_before = t.store().stats().expect("stats").records;
    assert_eq!(before.len() as u64, records_before);

    // Records the import rows send.
    let forged = {
        let fresh = foreign_listing(&other, 8, "A forged sieve");
        let mut b = fresh.bytes().to_vec();
        let last = b.len() - 1;
        b[last] ^= 0x01; // a bit of the signature
        hex::encode(b)
    };
    let forged_copy = {
        let mut b = theirs.bytes().to_vec();
        let last = b.len() - 1;
        b[last] ^= 0x01;
        hex::encode(b)
    };
    let truncated = hex::encode(&foreign_listing(&other, 9, "A truncated saw").bytes()[..60]);
    let zeros = "0".repeat(64);
    let me_peer = t.node.identity.public().to_string();

    let json = |v: Value| Req::new("POST", "/v1/listings").json(&v);
    let rows: Vec<(&str, Req, Expect)> = vec![
        (
            "no token",
            Req::new("GET", "/v1/status").auth(Auth::None),
            Expect::Error(401, "unauthorized", "missing or wrong bearer token"),
        ),
        (
            "a wrong token",
            Req::new("GET", "/v1/status").auth(Auth::Header(format!("Bearer {}", "00".repeat(32)))),
            Expect::Error(401, "unauthorized", "missing or wrong bearer token"),
        ),
        (
            "a token that is not hex, in another scheme",
            Req::new("GET", "/v1/status").auth(Auth::Header("Basic dHJvYzp0cm9j".into())),
            Expect::Error(401, "unauthorized", "api.token"),
        ),
        (
            "a body over the 64 KiB limit",
            json(with(listing_body("Big"), "description", json!("x".repeat(MAX_BODY_BYTES + 10)))),
            Expect::Error(413, "payload_too_large", "too large"),
        ),
        (
            "malformed JSON",
            Req::new("POST", "/v1/listings").raw_json(b"{\"kind\": ".to_vec()),
            Expect::Error(400, "bad_request", "JSON"),
        ),
        (
            "a wrong content type",
            Req::new("POST", "/v1/listings").typed("text/plain", listing_body("Plain").to_string().into_bytes()),
            Expect::Error(415, "unsupported_media_type", "Content-Type: application/json"),
        ),
        (
            "an unknown field",
            json(with(listing_body("Red drill"), "colour", json!("red"))),
            Expect::Error(400, "bad_request", "unknown field `colour`"),
        ),
        (
            "an unknown enumeration value",
            json(with(listing_body("Borrowed"), "kind", json!("borrow"))),
            Expect::Error(400, "bad_request", "unknown variant `borrow`"),
        ),
        (
            "a title over the length limit",
            json(listing_body(&"x".repeat(300))),
            Expect::Error(422, "invalid_record", "title is 300 bytes, over the limit of 120"),
        ),
        (
            "a control character in a title",
            json(listing_body("Bell\u{7} drill")),
            Expect::Error(422, "invalid_record", "title contains a forbidden character"),
        ),
        (
            "invalid UTF-8 in a title",
            Req::new("POST", "/v1/listings")
                .raw_json(b"{\"kind\":\"lend\",\"category\":\"tools\",\"title\":\"caf\xff\"}".to_vec()),
            Expect::Error(400, "bad_request", "invalid unicode code point"),
        ),
        (
            "a negative price",
            json(with(listing_body("Deposit"), "terms", json!({"deposit": {"amount_minor": -5, "currency": "EUR"}}))),
            Expect::Error(400, "bad_request", "invalid value: integer `-5`, expected u32"),
        ),
        (
            "an absurd price (10^12 cents)",
            json(with(
                listing_body("Deposit"),
                "terms",
                json!({"deposit": {"amount_minor": 1_000_000_000_000u64, "currency": "EUR"}}),
            )),
            Expect::Error(400, "bad_request", "expected u32"),
        ),
        (
            "a currency that is not three letters",
            json(with(listing_body("Deposit"), "terms", json!({"deposit": {"amount_minor": 5, "currency": "E1"}}))),
            Expect::Error(400, "bad_request", "currency"),
        ),
        (
            "an end of availability before its start",
            json(with(
                with(listing_body("Dates"), "available_from", json!(now + 10 * 86_400)),
                "available_until",
                json!(now + 86_400),
            )),
            Expect::Error(422, "invalid_record", "available_until: is before available_from"),
        ),
        (
            "an end of availability in the past",
            json(with(listing_body("Dates"), "available_until", json!(1000))),
            Expect::Error(400, "bad_request", "available_until is in the past"),
        ),
        (
            "a location that is no place on earth",
            json(with(listing_body("Nowhere"), "location", json!("999,999"))),
            Expect::Error(400, "bad_request", "is not a position"),
        ),
        (
            "an unknown listing",
            Req::new("GET", &format!("/v1/listings/{zeros}")),
            Expect::Error(404, "not_found", "no current listing"),
        ),
        (
            "a listing id that is not hex",
            Req::new("GET", "/v1/listings/zzzzzzzz"),
            Expect::Error(400, "bad_request", "is not a listing"),
        ),
        (
            "a path traversal in an id (encoded)",
            Req::new("GET", "/v1/listings/..%2F..%2Fetc%2Fpasswd"),
            Expect::Error(400, "bad_request", "\\\"../../etc/passwd\\\" is not a listing"),
        ),
        (
            "a path traversal in the path (raw)",
            Req::new("GET", "/v1/listings/../../etc/passwd"),
            Expect::Error(404, "not_found", "no such route"),
        ),
        (
            "a method a route does not take",
            Req::new("DELETE", "/v1/listings"),
            Expect::Error(405, "method_not_allowed", "another method"),
        ),
        (
            "limit=10^12 in a search",
            Req::new("GET", "/v1/search?limit=1000000000000"),
            Expect::Error(400, "bad_request", "out of range: 1 to 200"),
        ),
        (
            "a 3 KB search text",
            Req::new("GET", &format!("/v1/search?text={}", "ab+".repeat(1000))),
            Expect::Error(400, "bad_request", "at most 200"),
        ),
        (
            "a 32 KiB query string",
            Req::new("GET", &format!("/v1/search?text={}", "a".repeat(32 * 1024))),
            Expect::Error(414, "uri_too_long", "at most 8192"),
        ),
        (
            "a 100 KiB query string (beyond the HTTP parser's own limit)",
            Req::new("GET", &format!("/v1/search?text={}", "a".repeat(100 * 1024))),
            Expect::Bare(414),
        ),
        (
            "an unknown query parameter",
            Req::new("GET", "/v1/search?drop=table"),
            Expect::Error(400, "bad_request", "unknown query parameter \\\"drop\\\""),
        ),
        (
            "an import of a record with a forged signature",
            Req::new("POST", "/v1/import").json(&json!({"records": [forged]})),
            Expect::ImportRejected("bad_signature"),
        ),
        (
            "an import of a stored record with a forged signature",
            Req::new("POST", "/v1/import").json(&json!({"records": [forged_copy]})),
            Expect::ImportDuplicate,
        ),
        (
            "an import of a truncated record",
            Req::new("POST", "/v1/import").json(&json!({"records": [truncated]})),
            Expect::ImportRejected("malformed"),
        ),
        (
            "an import of a record that is not hex",
            Req::new("POST", "/v1/import").json(&json!({"records": ["zz"]})),
            Expect::Error(400, "bad_request", "record 0 is not hex"),
        ),
        (
            "an import of more than 1000 records",
            Req::new("POST", "/v1/import").json(&json!({"records": vec!["00"; 1001]})),
            Expect::Error(400, "bad_request", "at most 1000 records per request"),
        ),
        (
            "proposing a deal on one's own listing",
            Req::new("POST", "/v1/deals").json(&json!({"listing": mine_id})),
            Expect::Error(422, "invalid_record", "the counterparty must be someone other than the author"),
        ),
        (
            "reviewing a deal one is not party to (unknown here)",
            Req::new("POST", &format!("/v1/deals/{zeros}/review")).json(&json!({"rating": "positive"})),
            Expect::Error(404, "not_found", "no such deal"),
        ),
        (
            "editing someone else's listing",
            Req::new("PATCH", &format!("/v1/listings/{theirs_id}")).json(&json!({"title": "Mine now"})),
            Expect::Error(409, "conflict", "someone else's"),
        ),
        (
            "revoking someone else's record",
            Req::new("POST", &format!("/v1/records/{theirs_id}/revoke")),
            Expect::Error(403, "not_yours", ""),
        ),
        (
            "revoking a record id that is not hex",
            Req::new("POST", "/v1/records/..%2Fapi.token/revoke"),
            Expect::Error(400, "bad_request", "is not a record id (64 hex digits)"),
        ),
        (
            "vouching for oneself",
            Req::new("POST", "/v1/vouches").json(&json!({"subject": me_peer, "context": "I know me well"})),
            Expect::Error(400, "bad_request", "you cannot vouch for yourself"),
        ),
        (
            "dialling a bad multiaddr",
            Req::new("POST", "/v1/peers").json(&json!({"address": "/ip4/1.2.3.4/tcp/x"})),
            Expect::Error(400, "bad_request", "is not a multiaddr"),
        ),
        (
            "joining with a forged invite",
            Req::new("POST", "/v1/join").json(&json!({"invite": "troc1!!!!"})),
            Expect::Error(400, "bad_request", "not a troc invite"),
        ),
    ];

    let mut failures = Vec::new();
    for (name, req, expect) in &rows {
        let m0 = t.node.handle.metrics();
        let reply = send(&t, req).await;
        let m1 = t.node.handle.metrics();
        let api_count =
            |m: &troc_node::metrics::MetricsSnapshot, code: &str| m.api_refused.get(code).copied().unwrap_or(0);
        let local = |m: &troc_node::metrics::MetricsSnapshot, code: &str| {
            m.rejected.get(&Source::Local).and_then(|c| c.get(code)).copied().unwrap_or(0)
        };
        let ok = match *expect {
            Expect::Error(status, code, fragment) => {
                reply.status == status
                    && reply.code() == code
                    && (reply.message().contains(fragment) || reply.text.contains(fragment))
                    && api_count(&m1, code) == api_count(&m0, code) + 1
            }
            Expect::ImportRejected(code) => {
                reply.status == 200
                    && reply.body["rejected"][0]["code"] == code
                    && reply.body["stored"] == 0
                    && local(&m1, code) == local(&m0, code) + 1
            }
            Expect::ImportDuplicate => {
                let dup = |m: &troc_node::metrics::MetricsSnapshot| {
                    m.outcomes.get(&Source::Local).and_then(|o| o.get("duplicate")).copied().unwrap_or(0)
                };
                reply.status == 200
                    && reply.body["duplicate"] == 1
                    && reply.body["stored"] == 0
                    && dup(&m1) == dup(&m0) + 1
            }
            Expect::Bare(status) => reply.status == status && m1.api_refused == m0.api_refused,
        };
        if !ok {
            failures.push(format!("{name}: expected {expect:?}, got {} {}", reply.status, reply.text));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));

    // Slow requests: requests that never send the body they announce hold the request slots; once
    // all MAX_CONCURRENT_REQUESTS are held, the next request is shed at once with 429 (not queued), on
    // any route, and when they go, the node answers again. Slow requests are added one at a time until
    // a probe is shed: a slow request that arrives while another request holds a slot is itself shed.
    let mut slow = Vec::new();
    let shed_before = t.node.handle.metrics().api_refused.get("too_many_requests").copied().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if slow.len() < 2 * MAX_CONCURRENT_REQUESTS {
            slow.push(slow_request(&t).await);
        }
        if slow.len() >= MAX_CONCURRENT_REQUESTS {
            let r = send(&t, &Req::new("GET", "/v1/status")).await;
            if r.status == 429 && r.code() == "too_many_requests" && r.message().contains("too many requests at once") {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no request was shed with {} slow requests held", slow.len());
    }
    let shed_after = t.node.handle.metrics().api_refused.get("too_many_requests").copied().unwrap_or(0);
    assert!(shed_after > shed_before, "the shed request is counted");
    drop(slow);
    support::wait_until(LIMIT, "the node answers once the slow requests are gone", || async {
        send(&t, &Req::new("GET", "/v1/health")).await.status == 200
    })
    .await;

    // Too many event streams: the first MAX_EVENT_STREAMS open (one of them a client that never
    // reads, with a tiny receive buffer), the next one is refused.
    let _stuck = open_stream(&t, Some(4096)).await;
    let mut streams = Vec::new();
    for _ in 1..MAX_EVENT_STREAMS {
        streams.push(open_stream(&t, None).await);
    }
    let refused = send(&t, &Req::new("GET", "/v1/events")).await;
    assert_eq!((refused.status, refused.code()), (429, "too_many_requests"), "{}", refused.text);
    assert!(refused.message().contains("too many event streams"), "{}", refused.text);
    drop(streams);

    // With the stream that never reads still open, and 100 connections that never send a request,
    // the node keeps answering, and keeps storing what it is asked to (each listing is an event the
    // stuck stream does not take).
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(t.addr).await.expect("connect"));
    }
    let mut added = 0;
    for i in 0..40 {
        let (s, b) = t.call("POST", "/v1/listings", Some(listing_body(&format!("Flood of events {i}")))).await;
        assert_eq!(s, 201, "{b}");
        added += 1;
        let (s, b) = t.call("GET", "/v1/health", None).await;
        assert_eq!((s, b["ok"].as_bool()), (200, Some(true)), "the node stopped answering: {b}");
    }
    drop(idle);

    // Nothing lost: every record stored before the table is still there, byte for byte, and verifies;
    // the only new records are the 40 listings just published.
    let (s, status) = t.call("GET", "/v1/status", None).await;
    assert_eq!(s, 200, "{status}");
    assert_eq!(status["store"]["records"].as_u64(), Some(records_before + added), "{status}");
    let store = t.store();
    for (id, bytes) in &before {
        let rec = store.get(id).expect("read").unwrap_or_else(|| panic!("record {id} was lost"));
        assert_eq!(rec.bytes(), &bytes[..], "record {id} changed");
        let again = troc_protocol::decode(bytes).expect("decodes").verify().expect("verifies");
        assert_eq!(again.id(), *id);
    }
    assert!(status["metrics"]["api_refused"]["too_many_requests"].as_u64() >= Some(1), "{status}");
    t.stop().await;
}

/// Sends the head of a `POST /v1/listings` and one byte of the 100 it announces.
async fn slow_request(t: &Target) -> TcpStream {
    let mut c = TcpStream::connect(t.addr).await.expect("connect");
    let head = format!(
        "POST /v1/listings HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        t.addr, t.token
    );
    c.write_all(head.as_bytes()).await.expect("write");
    c
}

/// Opens `GET /v1/events` and reads only its status line; the stream is then left unread.
async fn open_stream(t: &Target, recv_buffer: Option<u32>) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("buffer size");
    }
    let mut stream = socket.connect(t.addr).await.expect("connect");
    let req = format!("GET /v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n", t.addr, t.token);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(LIMIT, stream.read_exact(&mut head)).await.expect("an answer").expect("read");
    assert_eq!(&head, b"HTTP/1.1 200", "the event stream did not open");
    stream
}

/// Runs `troc --home HOME ARGS` off the async threads.
async fn troc(home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(troc_bin());
    cmd.arg("--home").arg(home).args(args).env_remove("TROC_HOME");
    tokio::task::spawn_blocking(move || cmd.output().expect("troc runs")).await.expect("join")
}

/// A CLI row: the input, where it runs, the arguments, the exit code, a fragment of stderr, and the
/// API code the node counts the refusal under (None: refused before the node).
type CliRow<'a> = (&'a str, Home, Vec<&'a str>, i32, &'a str, Option<&'a str>);

/// Where a CLI row runs.
#[derive(Debug, Clone, Copy)]
enum Home {
    /// The running node's home.
    Node,
    /// A home with no node (and no files).
    Empty,
    /// A copy of the node's `api.json` with another token.
    WrongToken,
    /// `api.json` that is not JSON.
    CorruptApiFile,
    /// `api.json` pointing at a port nothing listens on.
    DeadAddress,
    /// A home with an identity and a `troc.toml` that does not parse.
    CorruptConfig,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cli_inputs_exit_with_their_documented_codes_and_lose_nothing() {
    let t = Target::start(71).await;
    let node_home = t.node.home.path().to_path_buf();
    let other = support::person(72);
    let theirs = foreign_listing(&other, 5, "Their hedge trimmer");
    let (s, r) = t.call("POST", "/v1/import", Some(json!({"records": [hex::encode(theirs.bytes())]}))).await;
    assert_eq!((s, r["stored"].as_u64()), (200, Some(1)), "{r}");
    let (s, mine) = t.call("POST", "/v1/listings", Some(listing_body("Sewing machine"))).await;
    assert_eq!(s, 201, "{mine}");
    let mine_id = mine["id"].as_str().expect("id").to_owned();
    let theirs_id = theirs.id().to_string();
    let before = t.snapshot();

    // The other homes.
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = |h: Home| match h {
        Home::Node => node_home.clone(),
        Home::Empty => dir.path().join("empty"),
        Home::WrongToken => dir.path().join("wrong-token"),
        Home::CorruptApiFile => dir.path().join("corrupt-api"),
        Home::DeadAddress => dir.path().join("dead"),
        Home::CorruptConfig => dir.path().join("corrupt-config"),
    };
    let api_json = std::fs::read(node_home.join("api.json")).expect("api.json");
    for (h, api, token) in [
        (Home::WrongToken, api_json.clone(), "00".repeat(32)),
        (Home::CorruptApiFile, b"nonsense".to_vec(), "00".repeat(32)),
        (Home::DeadAddress, br#"{"address":"127.0.0.1:1","pid":1,"peer_id":"x"}"#.to_vec(), "00".repeat(32)),
    ] {
        let p = homes(h);
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("api.json"), api).expect("write");
        std::fs::write(p.join("api.token"), token).expect("write");
    }
    let corrupt = homes(Home::CorruptConfig);
    let out = troc(&corrupt, &["init", "--name", "Corrupt"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(corrupt.join("troc.toml"), "name = [unclosed\n").expect("write");

    let zeros = "0".repeat(64);
    let up = ["up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"];
    let rows: Vec<CliRow> = vec![
        ("an unknown flag", Home::Node, vec!["--frobnicate"], 2, "unexpected argument '--frobnicate'", None),
        ("an unknown command", Home::Node, vec!["steal"], 2, "unrecognized subcommand 'steal'", None),
        (
            "a bad peer id",
            Home::Node,
            vec!["search", "--author", "notapeer"],
            2,
            "\"notapeer\": not a PeerId or 64 hex digits",
            None,
        ),
        ("a bad multiaddr", Home::Node, vec!["connect", "not-a-multiaddr"], 2, "invalid multiaddr", None),
        (
            "a bad date",
            Home::Node,
            vec!["offer", "add", "lend", "Drill", "-c", "tools", "--available-from", "2026-13-45"],
            2,
            "expected a day YYYY-MM-DD or Unix seconds",
            None,
        ),
        (
            "a bad price (three decimals)",
            Home::Node,
            vec!["offer", "add", "lend", "Drill", "-c", "tools", "--deposit", "12.345 EUR"],
            2,
            "expected an amount and a currency",
            None,
        ),
        (
            "an absurd price",
            Home::Node,
            vec!["offer", "add", "lend", "Drill", "-c", "tools", "--deposit", "99999999999 EUR"],
            2,
            "the amount is too large",
            None,
        ),
        (
            "a control character in a title",
            Home::Node,
            vec!["offer", "add", "lend", "Bell\u{7}drill", "-c", "tools"],
            2,
            "the title holds a control character",
            None,
        ),
        (
            "a bad listing reference",
            Home::Node,
            vec!["listing", "show", "xyz"],
            2,
            "expected a listing id, a prefix of at least 6 hex characters",
            None,
        ),
        ("an unknown listing", Home::Node, vec!["listing", "show", &zeros], 4, "no current listing", Some("not_found")),
        (
            "withdrawing someone else's listing",
            Home::Node,
            vec!["listing", "withdraw", &theirs_id],
            5,
            "only its author can change it (conflict)",
            Some("conflict"),
        ),
        ("revoking someone else's record", Home::Node, vec!["revoke", &theirs_id], 5, "(not_yours)", Some("not_yours")),
        (
            "proposing a deal on one's own listing",
            Home::Node,
            vec!["deal", "propose", &mine_id],
            1,
            "the counterparty must be someone other than the author (invalid_record)",
            Some("invalid_record"),
        ),
        ("a bad record id", Home::Node, vec!["revoke", "zz"], 2, "a record id: 64 hex digits", None),
        ("a missing home / node not running", Home::Empty, vec!["status"], 3, "start it with `troc up`", None),
        ("an api.json pointing at a dead port", Home::DeadAddress, vec!["status"], 3, "Connection refused", None),
        (
            "a corrupt api.json",
            Home::CorruptApiFile,
            vec!["status"],
            1,
            "api.json is not what a troc node writes",
            None,
        ),
        (
            "a wrong token",
            Home::WrongToken,
            vec!["status"],
            1,
            "missing or wrong bearer token (it is in <home>/api.token) (unauthorized)",
            Some("unauthorized"),
        ),
        ("a corrupt troc.toml", Home::CorruptConfig, up.to_vec(), 1, "is not a valid troc.toml", None),
    ];

    let mut failures = Vec::new();
    for (name, home, args, exit, fragment, counted) in &rows {
        let m0 = t.node.handle.metrics();
        let out = tokio::time::timeout(LIMIT * 3, troc(&homes(*home), args))
            .await
            .unwrap_or_else(|_| panic!("{name}: troc {args:?} did not exit"));
        let m1 = t.node.handle.metrics();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut ok = out.status.code() == Some(*exit) && stderr.contains(fragment);
        if let Some(code) = counted {
            let n = |m: &troc_node::metrics::MetricsSnapshot| m.api_refused.get(code).copied().unwrap_or(0);
            ok &= n(&m1) == n(&m0) + 1;
        }
        if !ok {
            failures
                .push(format!("{name}: expected exit {exit} and {fragment:?}, got {:?}: {stderr}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));

    // With --json the same error is one document with the API's code.
    let out = troc(&homes(Home::Node), &["--json", "listing", "show", &zeros]).await;
    let err: Value = serde_json::from_slice(&out.stderr).expect("one JSON document on stderr");
    assert_eq!((out.status.code(), err["error"]["code"].as_str()), (Some(4), Some("not_found")), "{err}");

    // The node still answers, and nothing was lost or added.
    let out = troc(&homes(Home::Node), &["--json", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let after = t.snapshot();
    assert_eq!(after, before, "the store changed");
    for (_, bytes) in &after {
        troc_protocol::decode(bytes).expect("decodes").verify().expect("verifies");
    }
    t.stop().await;
}
