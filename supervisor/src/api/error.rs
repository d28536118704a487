//! The one error shape of the API: a 4xx/5xx status and
//! `{"error": {"code": "...", "message": "...", ...}}`, with extra members
//! where a client needs them (`run_id` of `active_run_exists`, `field` of a
//! `bad_request`).

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::body::{json_response, Response};
use crate::daemon::DaemonError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: Map::new() }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// 400 `bad_request` naming `field`.
    pub fn bad_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).with("field", field)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        for (k, v) in self.extra {
            error.entry(k).or_insert(v);
        }
        json_response(self.status, &json!({ "error": error }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut out = ApiError::new(status, e.code(), e.to_string());
        match &e {
            StoreError::ActiveRunExists { run_id, session_id } => {
                out = out.with("run_id", run_id.as_str()).with("session_id", session_id.as_str());
            }
            StoreError::RunNotFound { run_id } => out = out.with("run_id", run_id.as_str()),
            StoreError::BadRequest(r) => out = out.with("field", r.field.as_str()),
            StoreError::InvalidLimit { .. } => out = out.with("field", "limit"),
            StoreError::InvalidTransition(t) => {
                out = out.with("from", t.from.as_str()).with("to", t.to.as_str());
            }
            _ => {}
        }
        if status.is_server_error() {
            tracing::error!("{e}");
        }
        out
    }
}

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> ApiError {
        match e {
            DaemonError::Store(e) => e.into(),
            DaemonError::Internal(m) | DaemonError::Policy(m) => {
                tracing::error!("{m}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", m)
            }
        }
    }
}
