//! The client of the node's local API (`docs/api.md`): finds the node through `<home>/api.json`,
//! authenticates with `<home>/api.token`, and turns answers into JSON values or typed errors.
//!
//! Plain HTTP, meant for loopback. Every request has a connect timeout and a total timeout, except
//! the event stream, which only has a read timeout longer than the server's keep-alive interval.
//! "Not running" (no `api.json`, or nothing listening at its address) is its own error, so every
//! command exits 3 with the same advice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::exit::CliError;

/// The file a running node writes with its API address.
pub const API_FILE: &str = "api.json";
/// The file that holds the API token.
pub const TOKEN_FILE: &str = "api.token";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The total time of an ordinary request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Dialling a peer may take longer than an ordinary request.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The event stream: the server sends a keep-alive every 15 s, so silence this long is a dead node.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What `api.json` holds.
#[derive(Debug, Deserialize)]
struct ApiFile {
    address: String,
}

/// A connection to the running node's API.
#[derive(Debug)]
pub struct Api {
    home: PathBuf,
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// A query string, as ordered pairs.
pub type Query = Vec<(&'static str, String)>;

impl Api {
    /// Finds the node of `home`. Fails with `NotRunning` if it has no `api.json`.
    pub fn open(home: &Path) -> anyhow::Result<Api> {
        let path = home.join(API_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CliError::NotRunning { home: home.to_path_buf(), cause: None }.into());
            }
            Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
        };
        let file: ApiFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not what a troc node writes", path.display()))?;
        let base = Url::parse(&format!("http://{}/", file.address))
            .with_context(|| format!("{} holds a bad address {:?}", path.display(), file.address))?;
        let token_path = home.join(TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("could not read the API token {}", token_path.display()))?
            .trim()
            .to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Api { home: home.to_path_buf(), base, token, http })
    }

    /// The URL of a path given as segments (each percent-encoded, so `/` inside one is kept).
    pub fn url(&self, segments: &[&str], query: &Query) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path =
                url.path_segments_mut().map_err(|()| anyhow::anyhow!("the API address is not a base URL"))?;
            path.clear();
            path.extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn not_running(&self, e: reqwest::Error) -> anyhow::Error {
        CliError::NotRunning { home: self.home.clone(), cause: Some(Box::new(e)) }.into()
    }

    /// Sends a request and returns the answer, or the API's error.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.request(method.clone(), url.clone()).bearer_auth(&self.token);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(self.not_running(e)),
            Err(e) if e.is_timeout() => {
                return Err(
                    anyhow::Error::new(e).context(format!("the node did not answer {method} {} in time", url.path()))
                );
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{method} {} failed", url.path()))),
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(api_error(resp).await.into())
    }

    /// A request with a JSON answer (`None` for 204 No Content).
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &Query,
        body: Option<&Value>,
        timeout: Duration,
    ) -> anyhow::Result<Option<Value>> {
        let url = self.url(segments, query)?;
        let path = url.path().to_owned();
        let resp = self.send(method.clone(), url, body, Some(timeout)).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await.with_context(|| format!("could not read the answer to {method} {path}"))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let value =
            serde_json::from_slice(&bytes).with_context(|| format!("the answer to {method} {path} is not JSON"))?;
        Ok(Some(value))
    }

    pub async fn get(&self, segments: &[&str], query: &Query) -> anyhow::Result<Value> {
        Ok(self.call(Method::GET, segments, query, None, REQUEST_TIMEOUT).await?.unwrap_or(Value::Null))
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(Method::POST, segments, &Vec::new(), Some(body), REQUEST_TIMEOUT).await?.unwrap_or(Value::Null))
    }

    pub async fn patch(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(Method::PATCH, segments, &Vec::new(), Some(body), REQUEST_TIMEOUT).await?.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        self.call(Method::DELETE, segments, &Vec::new(), None, REQUEST_TIMEOUT).await.map(|_| ())
    }

    /// A DELETE with a JSON answer.
    pub async fn delete_json(&self, segments: &[&str]) -> anyhow::Result<Value> {
        Ok(self.call(Method::DELETE, segments, &Vec::new(), None, REQUEST_TIMEOUT).await?.unwrap_or(Value::Null))
    }

    /// Opens the event stream (`GET /v1/events`): no total timeout, a read timeout instead.
    pub async fn events(&self, query: &Query) -> anyhow::Result<reqwest::Response> {
        let url = self.url(&["v1", "events"], query)?;
        let stream_client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STREAM_READ_TIMEOUT)
            .no_proxy()
            .build()
            .context("could not set up the HTTP client")?;
        let req = stream_client.get(url).bearer_auth(&self.token).header("Accept", "text/event-stream");
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(r),
            Ok(r) => Err(api_error(r).await.into()),
            Err(e) if e.is_connect() => Err(self.not_running(e)),
            Err(e) => Err(anyhow::Error::new(e).context("could not open the event stream")),
        }
    }
}

/// The API's error from a failed answer: `{"error": {"code", "message", "detail"?}}`, or a generic
/// one from the status when the body is not that.
async fn api_error(resp: reqwest::Response) -> CliError {
    let status = resp.status();
    let body: Option<Value> = resp.json().await.ok();
    let err = body.as_ref().and_then(|b| b.get("error"));
    let code = err.and_then(|e| e.get("code")).and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| {
        match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "not_found",
            409 => "conflict",
            503 => "unavailable",
            _ => "http_error",
        }
        .to_owned()
    });
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the node answered {status}"));
    let detail = err.and_then(|e| e.get("detail")).cloned().filter(|d| !d.is_null());
    CliError::Api { status: status.as_u16(), code, message, detail }
}
