//! The local API: HTTP + JSON (axum) over a running node, for the `troc` command line and for bots.
//!
//! The contract is `docs/api.md` (and the OpenAPI document `docs/openapi.json`, served at
//! `/v1/openapi.json`). The CLI has no other way into a node: whatever a person can do, a bot can do
//! with the same requests.
//!
//! # Safety rails
//!
//! - The server binds loopback unless the caller explicitly allows another address
//!   ([`ApiConfig::allow_public`]): the API signs records in the person's name.
//! - Every route but `/v1/health` and `/v1/openapi.json` needs the bearer token kept in
//!   `<home>/api.token` (mode 0600), compared in constant time.
//! - Bodies are bounded (64 KiB; 8 MiB for `/v1/import`), and request targets (8 KiB), unknown JSON
//!   fields are refused, requests
//!   beyond [`MAX_CONCURRENT_REQUESTS`] in flight are shed with 429, every request has a timeout,
//!   and at most [`MAX_EVENT_STREAMS`] event streams are open. At most 256 connections are open
//!   and none stays idle for more than two minutes ([`Connections`]). A bad request changes nothing.
//!
//! # Shutdown
//!
//! [`ApiServer::shutdown`] stops accepting, ends the event streams, waits for the requests in
//! flight (axum's graceful shutdown), then removes `<home>/api.json`. The caller shuts the node
//! down afterwards, so no request finds the node gone half-way.

mod conn;
pub(crate) mod deals;
mod error;
mod events;
pub(crate) mod listings;
mod local;
pub(crate) mod reputation;
pub(crate) mod routes;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::NodeHandle;

pub use conn::Connections;
pub use error::ApiError;
pub use events::ApiEvent;
pub use local::{Alert, LocalState};
pub use routes::{OPENAPI, ROUTES};

/// Requests handled at once; more are answered 429 at once rather than queued.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;
/// Event streams (`GET /v1/events`) open at once.
pub const MAX_EVENT_STREAMS: usize = 64;
/// The largest request body, except for `/v1/import`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest request target (path and query string): real requests are far shorter (a search's
/// text is at most 200 bytes). Longer targets are refused before any routing or parsing. (HTTP/1's
/// own parser answers a bare 414 to targets too long to parse at all, about 64 KiB.)
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest `/v1/import` body.
pub const MAX_IMPORT_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long one request may take (event streams excepted).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default API address.
pub const DEFAULT_API_PORT: u16 = 7711;

/// The person's own settings the API uses: the name published in their profile, the community new
/// listings go to by default, and a coarse location (a geohash of at most 5 characters) used as the
/// default location of new listings and as the point distances are measured from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalProfile {
    pub name: String,
    pub community: Option<String>,
    pub location: Option<String>,
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Allow a non-loopback address. Without it such an address is refused.
    pub allow_public: bool,
    /// The node's home: `api.token`, `api.json` and `local.json` live there.
    pub home: PathBuf,
    pub profile: LocalProfile,
    /// Connections open at once, and how long one may stay idle.
    pub connections: Connections,
}

impl ApiConfig {
    /// Loopback on the default port.
    pub fn new(home: PathBuf, profile: LocalProfile) -> Self {
        ApiConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
            allow_public: false,
            home,
            profile,
            connections: Connections::default(),
        }
    }
}

/// Why the API could not start.
#[derive(Debug, Error)]
pub enum ApiStartError {
    #[error("refusing to serve the API on {0}: it is not a loopback address (allow it explicitly with --api-public)")]
    NotLoopback(SocketAddr),
    #[error("could not bind the API to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read or create the API token {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API token file {path} is readable by others: run `chmod 600 {path}`")]
    TokenTooOpen { path: PathBuf },
    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the API's local state")]
    Local(#[from] local::LocalError),
    #[error("invalid profile setting: {0}")]
    Profile(String),
}

/// What `<home>/api.json` holds while the API runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiInfo {
    pub address: SocketAddr,
    pub pid: u32,
    pub peer_id: String,
}

impl ApiInfo {
    /// Reads `<home>/api.json` (None if the file is missing: no API runs from this home).
    pub fn read(home: &Path) -> std::io::Result<Option<ApiInfo>> {
        match std::fs::read(home.join(API_INFO_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The file that tells clients where the API is.
pub const API_INFO_FILE: &str = "api.json";
/// The file that holds the bearer token.
pub const TOKEN_FILE: &str = "api.token";

/// Shared by every handler.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub node: NodeHandle,
    pub token: Arc<[u8; 32]>,
    pub profile: Arc<LocalProfile>,
    pub started_at: u64,
    pub api_addr: SocketAddr,
    pub local: Arc<local::LocalStore>,
    pub events: broadcast::Sender<Arc<ApiEvent>>,
    pub streams: Arc<Semaphore>,
    /// Becomes true at shutdown: event streams end.
    pub closing: watch::Receiver<bool>,
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    home: PathBuf,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    pump: JoinHandle<()>,
}

impl ApiServer {
    /// The address the API listens on (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server: no new connections, event streams end, requests in flight finish; then
    /// `api.json` is removed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), self.server).await.is_err() {
            warn!("the API server did not stop in time");
        }
        self.pump.abort();
        let path = self.home.join(API_INFO_FILE);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %path.display(), error = %e, "could not remove the API address file");
        }
        info!("API stopped");
    }
}

/// Starts the API for `node`: reads or creates the token, publishes the person's profile if it
/// changed, re-follows the communities and re-dials the peers remembered from invites, binds, and
/// writes `api.json`.
pub async fn serve(node: NodeHandle, config: ApiConfig) -> Result<ApiServer, ApiStartError> {
    if !config.addr.ip().is_loopback() && !config.allow_public {
        return Err(ApiStartError::NotLoopback(config.addr));
    }
    check_profile(&config.profile)?;
    let token = load_or_create_token(&config.home)?;
    let local = Arc::new(local::LocalStore::open(&config.home)?);

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ApiStartError::Bind { addr: config.addr, source })?;
    let addr = listener.local_addr().map_err(|source| ApiStartError::Bind { addr: config.addr, source })?;
    let listener = conn::Listener::new(listener, config.connections);

    let (stop, closing) = watch::channel(false);
    let (events, _) = broadcast::channel(events::API_EVENT_CAPACITY);
    let state = AppState {
        node: node.clone(),
        token: Arc::new(token),
        profile: Arc::new(config.profile.clone()),
        started_at: crate::now_secs(),
        api_addr: addr,
        local: local.clone(),
        events: events.clone(),
        streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        closing: closing.clone(),
    };

    // Background work that must not delay the start: the profile, remembered communities and peers.
    tokio::spawn(restore(node.clone(), config.profile.clone(), local.clone()));
    let pump = tokio::spawn(events::pump(state.clone()));

    let app = routes::router(state);
    let mut closing_server = closing.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = closing_server.wait_for(|c| *c).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            warn!(error = %e, "the API server failed");
        }
    });

    let info = ApiInfo { address: addr, pid: std::process::id(), peer_id: node.peer_id().to_base58() };
    let info_path = config.home.join(API_INFO_FILE);
    let json = serde_json::to_vec_pretty(&info)
        .map_err(|e| ApiStartError::Write { path: info_path.clone(), source: std::io::Error::other(e) })?;
    local::write_atomic(&info_path, &json, 0o644)
        .map_err(|source| ApiStartError::Write { path: info_path.clone(), source })?;
    info!(address = %addr, "API listening");
    Ok(ApiServer { addr, home: config.home, stop, server, pump })
}

fn check_profile(p: &LocalProfile) -> Result<(), ApiStartError> {
    if let Some(c) = &p.community {
        troc_protocol::types::check_community(c).map_err(|e| ApiStartError::Profile(format!("community: {e}")))?;
    }
    if let Some(l) = &p.location
        && troc_protocol::geohash::bounds(l).is_none()
    {
        return Err(ApiStartError::Profile(format!("location {l:?} is not a geohash")));
    }
    Ok(())
}

/// Publishes the profile if it differs from the stored one, follows the remembered communities and
/// re-dials the remembered peers (as bootstrap peers: kept connected).
async fn restore(node: NodeHandle, profile: LocalProfile, local: Arc<local::LocalStore>) {
    if let Err(e) = listings::ensure_profile(&node, &profile).await {
        warn!(error = %e, "could not publish the profile");
    }
    let snapshot = local.snapshot();
    for community in snapshot.communities.iter().chain(profile.community.iter()) {
        if let Err(e) = node.follow(community).await {
            warn!(community, error = %e, "could not follow a remembered community");
        }
    }
    for addr in snapshot.peers {
        match addr.parse() {
            Ok(addr) => {
                if let Err(e) = node.add_bootstrap(addr).await {
                    warn!(error = %e, "could not add a remembered peer");
                }
            }
            Err(e) => warn!(address = %addr, error = %e, "a remembered peer address does not parse"),
        }
    }
}

/// Reads `<home>/api.token`, or creates it (32 random bytes, hex, mode 0600) if missing.
fn load_or_create_token(home: &Path) -> Result<[u8; 32], ApiStartError> {
    let path = home.join(TOKEN_FILE);
    let token_err = |source| ApiStartError::Token { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).map_err(token_err)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(ApiStartError::TokenTooOpen { path });
                }
            }
            let mut token = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut token).map_err(|e| {
                token_err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not 64 hex characters: {e}")))
            })?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut token = [0u8; 32];
            getrandom::fill(&mut token).map_err(|e| token_err(std::io::Error::other(e.to_string())))?;
            std::fs::create_dir_all(home).map_err(token_err)?;
            local::write_atomic(&path, format!("{}\n", hex::encode(token)).as_bytes(), 0o600).map_err(token_err)?;
            Ok(token)
        }
        Err(e) => Err(token_err(e)),
    }
}

/// Reads the token of the node whose home is `home` (for clients).
pub fn read_token(home: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(home.join(TOKEN_FILE))?.trim().to_owned())
}
