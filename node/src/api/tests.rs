//! Tests of the local API against real in-process nodes over loopback HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use troc_protocol::Identity;

use super::*;
use crate::{Node, NodeConfig};

struct TestApi {
    _home: tempfile::TempDir,
    node: NodeHandle,
    server: Option<ApiServer>,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl TestApi {
    async fn start(seed: u8, community: &str) -> TestApi {
        TestApi::start_with(seed, community, |_| {}).await
    }

    async fn start_with(seed: u8, community: &str, adjust: impl FnOnce(&mut ApiConfig)) -> TestApi {
        let home = tempfile::tempdir().unwrap();
        let identity = Identity::from_seed(&[seed; 32]);
        let mut cfg = NodeConfig::for_test(home.path().to_path_buf(), identity);
        cfg.communities = vec![community.to_owned()];
        let (node, _events) = Node::spawn(cfg).await.unwrap();
        let mut api = ApiConfig::new(
            home.path().to_path_buf(),
            LocalProfile {
                name: format!("Person {seed}"),
                community: Some(community.to_owned()),
                location: Some("u09tv".into()),
            },
        );
        api.addr = "127.0.0.1:0".parse().unwrap();
        adjust(&mut api);
        let server = serve(node.clone(), api).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let token = read_token(home.path()).unwrap();
        TestApi { _home: home, node, server: Some(server), base, token, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Stops the API, then the node; returns the home so a test can look at it afterwards.
    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.node.shutdown().await.unwrap();
        self._home
    }
}

fn drill() -> Value {
    json!({"kind": "lend", "category": "tools", "title": "Cordless drill", "description": "18 V, two batteries",
           "tags": ["drill"], "terms": {"max_loan_days": 7}})
}

#[tokio::test]
async fn bad_requests_get_clear_errors_change_nothing_and_the_server_keeps_serving() {
    let api = TestApi::start(1, "north-end").await;
    let records_before = api.node.store().stats().unwrap().records;

    // No token, a wrong token.
    let r = api.http.get(api.url("/v1/status")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = api.http.post(api.url("/v1/listings")).bearer_auth("00".repeat(32)).json(&drill()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Malformed JSON, an unknown field, a wrong type, a wrong content type, a body too large.
    let r = api
        .http
        .post(api.url("/v1/listings"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"kind\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut unknown = drill();
    unknown["colour"] = json!("red");
    let (s, b) = api.post("/v1/listings", unknown).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("colour"), "{b}");
    let (s, _) = api.post("/v1/listings", json!({"kind": "borrow", "category": "tools", "title": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let r =
        api.http.post(api.url("/v1/listings")).bearer_auth(&api.token).body(drill().to_string()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut huge = drill();
    huge["description"] = json!("x".repeat(MAX_BODY_BYTES + 10));
    let (s, b) = api.post("/v1/listings", huge).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

    // A protocol rule: swap needs something in return.
    let (s, b) = api.post("/v1/listings", json!({"kind": "swap", "category": "books", "title": "Novels"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "invalid_record");
    assert!(b["error"]["detail"].is_string(), "{b}");

    // Unknown route, wrong method, bad query parameter, bad listing reference.
    let (s, b) = api.get("/v1/nothing").await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, b) = api.call(reqwest::Method::DELETE, "/v1/status", None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    let (s, _) = api.get("/v1/search?colour=red").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.get("/v1/search?limit=100000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.get("/v1/listings/xyz").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Nothing was stored by any of that (the profile is published in the background: wait for it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while api.node.store().profile(api.node.identity().public()).unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the profile was never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(api.node.store().stats().unwrap().records, records_before + 1);

    // Every documented route is served (whatever it answers to an empty request, it is not "no
    // such route" nor "another method").
    for (method, path) in ROUTES {
        if *path == "/v1/events" {
            continue; // a stream: covered by its own test
        }
        let path = path.replace("{listing}", "000000").replace("{id}", "00000000");
        let method: reqwest::Method = method.to_uppercase().parse().unwrap();
        let (s, b) = api.call(method.clone(), &path, None).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!b.to_string().contains("no such route"), "{method} {path}: {b}");
    }

    // And the server still serves.
    let (s, b) = api.post("/v1/listings", drill()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = api.get("/v1/health").await;
    assert_eq!((s, b["ok"].as_bool()), (StatusCode::OK, Some(true)));
    api.stop().await;
}

#[tokio::test]
async fn a_listing_lives_through_show_edit_renew_and_withdraw() {
    let api = TestApi::start(2, "north-end").await;
    let (s, created) = api.post("/v1/listings", drill()).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["community"], "north-end");
    assert_eq!(created["location"], "u09tv");
    assert_eq!(created["mine"], true);
    let id = created["id"].as_str().unwrap().to_owned();
    let address = created["address"].as_str().unwrap().to_owned();

    // By id, by prefix, by address.
    for reference in [id.clone(), id[..8].to_owned(), address.clone()] {
        let (s, shown) = api.get(&format!("/v1/listings/{reference}")).await;
        assert_eq!(s, StatusCode::OK, "{reference}: {shown}");
        assert_eq!(shown["id"], created["id"]);
    }

    let (s, edited) = api
        .call(reqwest::Method::PATCH, &format!("/v1/listings/{id}"), Some(json!({"title": "Cordless drill 18V"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!((edited["revision"].as_u64(), edited["title"].as_str()), (Some(2), Some("Cordless drill 18V")));
    // The old id no longer names a current listing; the address does.
    let (s, _) = api.get(&format!("/v1/listings/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, shown) = api.get(&format!("/v1/listings/{address}")).await;
    assert_eq!(shown["revision"], 2);

    let (s, renewed) = api.post(&format!("/v1/listings/{address}/renew"), json!({"valid_for_days": 60})).await;
    assert_eq!(s, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["revision"], 3);
    assert!(renewed["valid_until"].as_u64().unwrap() > edited["valid_until"].as_u64().unwrap());

    let (_, mine) = api.get("/v1/mine").await;
    assert_eq!(mine["listings"].as_array().unwrap().len(), 1);

    let (s, w) = api.post(&format!("/v1/listings/{address}/withdraw"), json!({"reason": "sold"})).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let (s, _) = api.get(&format!("/v1/listings/{address}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, mine) = api.get("/v1/mine").await;
    assert!(mine["listings"].as_array().unwrap().is_empty());

    // Someone else's listing cannot be changed.
    let other = Identity::from_seed(&[99; 32]);
    let theirs = troc_protocol::Listing {
        key: troc_protocol::ListingKey([7; 16]),
        revision: 1,
        kind: troc_protocol::Kind::Give,
        category: troc_protocol::Category::Books,
        title: "Old atlas".into(),
        description: String::new(),
        tags: vec![],
        terms: Default::default(),
        community: "north-end".into(),
        location: String::new(),
        available_from: None,
        available_until: None,
        valid_until: crate::now_secs() + 86_400,
    };
    let signed = troc_protocol::Signed::sign(&other, crate::now_secs(), theirs).unwrap();
    assert!(api.node.publish(&signed.clone().into_any()).await.unwrap().is_stored());
    let (s, b) = api.post(&format!("/v1/listings/{}/withdraw", signed.id()), json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{b}");
    api.stop().await;
}

/// Reads SSE messages from a response until `want` accepts one (or the time is up).
async fn next_event(resp: &mut reqwest::Response, buf: &mut String, want: impl Fn(&str, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let message: String = buf.drain(..end + 2).collect();
            let mut kind = "";
            let mut data = String::new();
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                let value: Value = serde_json::from_str(&data).unwrap();
                if want(kind, &value) {
                    return json!({"event": kind, "data": value});
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("no such event in time").unwrap();
        buf.push_str(std::str::from_utf8(&chunk.expect("the stream ended")).unwrap());
    }
}

#[tokio::test]
async fn search_alerts_and_the_event_stream() {
    let api = TestApi::start(3, "north-end").await;
    let (s, alert) =
        api.post("/v1/alerts", json!({"name": "drills", "query": {"text": "drill", "kinds": ["lend"]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{alert}");
    let (s, _) = api.post("/v1/alerts", json!({"query": {"limit": 0}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let mut stream = api.http.get(api.url("/v1/events")).bearer_auth(&api.token).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut filtered =
        api.http.get(api.url("/v1/events?types=listing_new&kind=give")).bearer_auth(&api.token).send().await.unwrap();
    let (s, b) = api.get("/v1/events?types=nonsense").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    let (_, created) = api.post("/v1/listings", drill()).await;
    let (_, given) = api
        .post("/v1/listings", json!({"kind": "give", "category": "books", "title": "Atlas", "location": "48.85,2.35"}))
        .await;
    assert_eq!(given["location"].as_str().map(str::len), Some(5), "{given}");

    let mut buf = String::new();
    let e = next_event(&mut stream, &mut buf, |k, _| k == "listing_new").await;
    assert_eq!(e["data"]["listing"]["id"], created["id"]);
    let e = next_event(&mut stream, &mut buf, |k, _| k == "alert").await;
    assert_eq!(e["data"]["alert"], alert["id"]);
    assert_eq!(e["data"]["listing"]["id"], created["id"]);
    // The filtered stream sees only the give listing.
    let mut fbuf = String::new();
    let e = next_event(&mut filtered, &mut fbuf, |_, _| true).await;
    assert_eq!(e["data"]["listing"]["id"], given["id"], "{e}");

    let (s, found) = api.get("/v1/search?text=drill&kind=lend&near=u09tv&within_km=10").await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["total"], 1);
    assert_eq!(found["listings"][0]["id"], created["id"]);
    assert_eq!(found["listings"][0]["distance"], "< 1 km");
    let (_, none) = api.get("/v1/search?text=drill&kind=give").await;
    assert_eq!(none["total"], 0);

    let (s, _) =
        api.call(reqwest::Method::DELETE, &format!("/v1/alerts/{}", alert["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, alerts) = api.get("/v1/alerts").await;
    assert!(alerts["alerts"].as_array().unwrap().is_empty());

    // Shutting the API down ends the streams.
    let server = api.server.as_ref().map(|s| s.local_addr());
    assert!(server.is_some());
    api.stop().await;
    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the event stream did not end at shutdown");
}

#[tokio::test]
async fn invite_and_join_connect_two_nodes_and_are_remembered() {
    let a = TestApi::start(4, "north-end").await;
    let b = TestApi::start(5, "south-side").await;
    let (s, invite) = a.get("/v1/invite").await;
    assert_eq!(s, StatusCode::OK, "{invite}");
    assert!(invite["invite"].as_str().unwrap().starts_with("troc1"));
    assert_eq!(invite["communities"], json!(["north-end"]));

    let (s, bad) = b.post("/v1/join", json!({"invite": "troc1!!!"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    let (s, own) = a.post("/v1/join", json!({"invite": invite["invite"]})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{own}");

    let (s, joined) = b.post("/v1/join", json!({"invite": invite["invite"]})).await;
    assert_eq!(s, StatusCode::OK, "{joined}");
    assert_eq!(joined["connected"], true);
    assert!(b.node.scopes().contains(&"community/north-end".to_string()));
    let (_, peers) = b.get("/v1/peers").await;
    assert!(peers["peers"].as_array().unwrap().iter().any(|p| p["peer_id"] == invite["peer_id"]), "{peers}");
    let local = local::LocalStore::open(b._home.path()).unwrap().snapshot();
    assert_eq!(local.communities, vec!["north-end".to_string()]);
    assert!(!local.peers.is_empty());

    // A's listing reaches B through the joined community.
    let (_, created) = a.post("/v1/listings", drill()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, found) = b.get("/v1/search?text=drill").await;
        if found["total"] == 1 {
            assert_eq!(found["listings"][0]["id"], created["id"]);
            assert_eq!(found["listings"][0]["mine"], false);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the listing never reached the joined node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn api_json_and_token_files_and_loopback_only() {
    let api = TestApi::start(6, "north-end").await;
    let home = api._home.path().to_path_buf();
    let info = ApiInfo::read(&home).unwrap().unwrap();
    assert_eq!(format!("http://{}", info.address), api.base);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join(TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let token = api.token.clone();
    let node = api.node.clone();
    let _home = api.stop().await;
    assert!(ApiInfo::read(&home).unwrap().is_none(), "api.json must go at shutdown");

    // The same token after a restart; a public address is refused without allow_public.
    let mut cfg = ApiConfig::new(home.clone(), LocalProfile::default());
    cfg.addr = "0.0.0.0:0".parse().unwrap();
    let err = serve(node, cfg).await.unwrap_err();
    assert!(matches!(err, ApiStartError::NotLoopback(_)), "{err}");
    assert_eq!(read_token(&home).unwrap(), token);
}

#[test]
fn the_openapi_document_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(routes::OPENAPI).unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_some() {
                documented.push((method.to_owned(), path.clone()));
            }
        }
    }
    let mut served: Vec<(String, String)> =
        routes::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}

#[test]
fn distances_default_to_the_nodes_own_location() {
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    let q = routes::search_query(&pairs(&[("within_km", "5")]), &[], Some("u09tv")).unwrap();
    assert_eq!((q.near.as_deref(), q.within_km), (Some("u09tv"), Some(5.0)));
    let q = routes::search_query(&pairs(&[("near", "48.85,2.35")]), &[], None).unwrap();
    assert_eq!(q.sort, Some(crate::search::Sort::Distance));
    assert_eq!(q.near.as_deref().map(str::len), Some(5));
    assert!(routes::search_query(&pairs(&[("within_km", "5")]), &[], None).is_err());
    assert!(routes::search_query(&pairs(&[("sort", "distance")]), &[], None).is_err());
}

#[tokio::test]
async fn reputation_vouches_and_revocations_with_their_bounds() {
    let api = TestApi::start(7, "north-end").await;
    let me = api.node.identity().public().to_string();
    let other = Identity::from_seed(&[8; 32]);
    let them = other.public().to_string();
    let code = |b: &Value| b["error"]["code"].as_str().map(str::to_owned);

    // Bad peer ids and out-of-bounds parameters: 400, nothing computed from them.
    for path in [
        "/v1/reputation/not-a-peer".to_owned(),
        format!("/v1/reputation/{}", "z".repeat(300)),
        "/v1/reputation?limit=0".to_owned(),
        "/v1/reputation?limit=201".to_owned(),
        "/v1/reputation?limit=ten".to_owned(),
        "/v1/reputation?colour=red".to_owned(),
        format!("/v1/reputation/{them}?explain=true&paths=0"),
        format!("/v1/reputation/{them}?explain=true&paths=6"),
        format!("/v1/reputation/{them}?paths=2"),
        format!("/v1/reputation/{them}?explain=maybe"),
    ] {
        let (s, b) = api.get(&path).await;
        assert_eq!((s, code(&b).as_deref()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{path}: {b}");
    }

    // Someone the node knows nothing of is unknown, with no evidence; the node itself is the viewer.
    let (s, b) = api.get(&format!("/v1/reputation/{them}?explain=true")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!((b["peer_id"].as_str(), b["standing"].as_str()), (Some(them.as_str()), Some("unknown")), "{b}");
    assert_eq!(b["evidence"]["deals_completed"], 0);
    assert_eq!(b["explanation"]["paths"], json!([]));
    assert_eq!(b["blocked"], false);
    let (s, b) = api.get(&format!("/v1/reputation/{me}")).await;
    assert_eq!((s, b["standing"].as_str()), (StatusCode::OK, Some("viewer")), "{b}");
    let (s, b) = api.get("/v1/reputation?limit=5").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["people"].is_array() && b["view"]["computed_at"].is_u64(), "{b}");

    // Vouches: bounds first.
    for body in [
        json!({"subject": them, "context": ""}),
        json!({"subject": them, "context": "x".repeat(201)}),
        json!({"subject": them, "context": "Neighbour", "days": 0}),
        json!({"subject": them, "context": "Neighbour", "days": 731}),
        json!({"subject": me, "context": "Myself"}),
        json!({"subject": "xyz", "context": "Neighbour"}),
        json!({"subject": them, "context": "Neighbour", "colour": "red"}),
    ] {
        let (s, b) = api.post("/v1/vouches", body.clone()).await;
        assert_eq!((s, code(&b).as_deref()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{body}: {b}");
    }
    let (s, b) = api.post("/v1/vouches", json!({"subject": them, "context": "Next door for years", "days": 30})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let vouch = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b["expires_at"].as_u64().unwrap() - b["created_at"].as_u64().unwrap(), 30 * 86400);
    let (_, b) = api.get("/v1/vouches").await;
    assert_eq!(b["given"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(
        (b["given"][0]["id"].as_str(), b["given"][0]["subject"].as_str()),
        (Some(vouch.as_str()), Some(them.as_str()))
    );
    assert_eq!(b["received"], json!([]));

    // The engine counts it (the model is rebuilt at most once a second: poll until it is).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, b) = api.get(&format!("/v1/reputation/{them}")).await;
        if b["evidence"]["vouches_received"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the vouch never reached the engine: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A vouch received, signed by the other person: listed, and not ours to revoke.
    let theirs = troc_protocol::Signed::sign(
        &other,
        crate::now_secs(),
        troc_protocol::Vouch {
            subject: *api.node.identity().public(),
            context: "Lent me a ladder".into(),
            expires_at: crate::now_secs() + 86400,
        },
    )
    .unwrap();
    assert!(api.node.publish(&theirs.clone().into_any()).await.unwrap().is_stored());
    let (_, b) = api.get("/v1/vouches").await;
    assert_eq!(b["received"][0]["id"].as_str(), Some(theirs.id().to_string().as_str()), "{b}");
    let (s, b) = api.post(&format!("/v1/records/{}/revoke", theirs.id()), json!({})).await;
    assert_eq!((s, code(&b).as_deref()), (StatusCode::FORBIDDEN, Some("not_yours")), "{b}");
    assert!(api.node.store().contains(&theirs.id()).unwrap());

    // Revocations: a bad id, an unknown id, a bad body.
    let (s, b) = api.post("/v1/records/abc/revoke", json!({})).await;
    assert_eq!((s, code(&b).as_deref()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{b}");
    let (s, b) = api.post(&format!("/v1/records/{}/revoke", "ab".repeat(32)), json!({})).await;
    assert_eq!((s, code(&b).as_deref()), (StatusCode::NOT_FOUND, Some("not_found")), "{b}");
    let (s, _) = api.post(&format!("/v1/records/{vouch}/revoke"), json!({"reason": "x".repeat(501)})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.post(&format!("/v1/records/{vouch}/revoke"), json!({"why": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Our own vouch is revoked: gone from the store and the list; a revocation is not revocable.
    let (s, b) = api.post(&format!("/v1/records/{vouch}/revoke"), json!({"reason": "Moved away"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let revocation = b["revocation"].as_str().unwrap().to_owned();
    assert!(!api.node.store().contains(&vouch.parse().unwrap()).unwrap());
    let (_, b) = api.get("/v1/vouches").await;
    assert_eq!(b["given"], json!([]), "{b}");
    let (s, b) = api.post(&format!("/v1/records/{revocation}/revoke"), json!({})).await;
    assert_eq!((s, code(&b).as_deref()), (StatusCode::CONFLICT, Some("not_revocable")), "{b}");
    let (s, b) = api.post(&format!("/v1/records/{vouch}/revoke"), json!({})).await;
    assert_eq!((s, code(&b).as_deref()), (StatusCode::NOT_FOUND, Some("not_found")), "{b}");

    // A blocked person is shown as blocked.
    let (s, _) = api.post("/v1/blocked", json!({"person": them})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = api.get(&format!("/v1/reputation/{them}")).await;
    assert_eq!((b["standing"].as_str(), &b["blocked"]), (Some("blocked"), &json!(true)), "{b}");
    let _ = api.stop().await;
}

/// A connection that says nothing is closed after the idle time, and no more connections than
/// the cap are served at once: the next one waits until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_their_number_is_bounded() {
    use tokio::io::AsyncReadExt;
    let idle = Duration::from_millis(400);
    let t = TestApi::start_with(0x5A, "north", |api| api.connections = Connections { max: 3, idle }).await;
    let addr = t.server.as_ref().unwrap().local_addr();

    // Idle: the server closes it (end of stream, or a reset) once the idle time is over.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let opened = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the idle connection was closed: {read:?}");
    assert!(opened.elapsed() >= idle.mul_f64(0.9), "closed after {:?}, before the idle time", opened.elapsed());

    // The cap: three silent connections take every place; a request on a fourth is answered only
    // once the first of them has been closed for idling.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let opened = std::time::Instant::now();
    let fresh = reqwest::Client::new();
    let resp = fresh.get(t.url("/v1/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let waited = opened.elapsed();
    assert!(waited >= idle.mul_f64(0.9), "answered after {waited:?}: the cap of 3 let a fourth connection in");
    drop(held);
    t.stop().await;
}
