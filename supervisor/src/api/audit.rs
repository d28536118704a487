//! `GET /v1/audit` and `GET /v1/audit/verify`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::body::{json_response, number_param, param, query_params, Response};
use super::error::ApiError;
use crate::daemon::Daemon;
use crate::store::{AuditFilter, DEFAULT_LIMIT};

pub async fn list(daemon: &Arc<Daemon>, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["session_id", "run_id", "after_seq", "limit"])?;
    let filter = AuditFilter {
        session_id: param(&params, "session_id").map(str::to_owned),
        run_id: param(&params, "run_id").map(str::to_owned),
        after_seq: number_param(&params, "after_seq")?,
        limit: number_param(&params, "limit")?.unwrap_or(DEFAULT_LIMIT),
    };
    let events = daemon.db(move |store| store.list_audit(&filter)).await?;
    Ok(json_response(StatusCode::OK, &json!({ "events": events })))
}

pub async fn verify(daemon: &Arc<Daemon>) -> Result<Response, ApiError> {
    let verification = daemon.db(|store| store.verify_audit()).await?;
    Ok(json_response(StatusCode::OK, &verification))
}
