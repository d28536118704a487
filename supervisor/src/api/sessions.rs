//! `POST /v1/sessions/{id}/messages` and `GET /v1/sessions/{id}/messages`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::body::{json_response, param, parse_json, query_params, read_body, Response};
use super::error::ApiError;
use super::to_the_end;
use crate::daemon::Daemon;
use crate::model::{Actor, Direction};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundMessage {
    text: String,
    #[serde(default)]
    sender: Option<String>,
}

pub async fn post_message(
    daemon: &Arc<Daemon>,
    session_id: &str,
    request: Request<Incoming>,
    actor: Actor,
) -> Result<Response, ApiError> {
    let body: InboundMessage = parse_json(&read_body(request).await?)?;
    let (daemon, session_id) = (daemon.clone(), session_id.to_owned());
    let ingested =
        to_the_end(async move { daemon.ingest_message(session_id, body.text, body.sender, actor).await }).await?;
    Ok(json_response(StatusCode::ACCEPTED, &ingested))
}

pub async fn list_messages(daemon: &Arc<Daemon>, session_id: &str, query: Option<&str>) -> Result<Response, ApiError> {
    let params = query_params(query, &["direction"])?;
    let direction = param(&params, "direction")
        .map(|d| d.parse::<Direction>().map_err(|e| ApiError::bad_field("direction", e)))
        .transpose()?;
    let messages = daemon.list_messages(session_id.to_owned(), direction).await?;
    Ok(json_response(StatusCode::OK, &json!({ "messages": messages })))
}
