//! The API's errors: one type that every handler returns, rendered as the right HTTP status and a
//! JSON body `{"error": {"code", "message", "detail"?}}` with a stable `code` (table in
//! `docs/api.md`). axum's own rejections (bad JSON, a wrong content type, a body too large, a bad
//! query string) are mapped into the same shape, so a client only ever parses one error format.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use crate::NodeError;
use crate::store::StoreError;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// A finer code: the protocol rule a record broke, the quota that refused it.
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), detail: None }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token (it is in <home>/api.token)")
    }

    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the node is shutting down")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(code = self.code, message = %self.message, "API request failed");
        }
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(d) = self.detail {
            error["detail"] = json!(d);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        // The counting layer (`routes::count_refusals`) reads the code from here: every refusal is
        // counted in the node's metrics, whichever handler, extractor or layer made it.
        response.extensions_mut().insert(Refused(self.code));
        response
    }
}

/// The API error code of a response, left in its extensions for the layer that counts refusals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused(pub &'static str);

/// The full cause chain of an error, for messages.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::ShutDown => ApiError::unavailable(),
            NodeError::Record(r) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_record", r.to_string()).with_detail(r.code())
            }
            other => ApiError::internal(chain(&other)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(format!("the store failed: {}", chain(&e)))
    }
}

impl From<troc_protocol::RecordError> for ApiError {
    fn from(r: troc_protocol::RecordError) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_record", r.to_string()).with_detail(r.code())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is too large")
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("a background task failed: {e}"))
    }
}
