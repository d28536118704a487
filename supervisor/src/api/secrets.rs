//! `/v1/secrets`: the secret store's names, and setting or deleting one.
//! A value goes in and never comes out: no route answers with one.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::body::{json_response, parse_json, read_body, Response};
use super::error::ApiError;
use crate::daemon::Daemon;
use crate::model::Actor;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    value: String,
}

pub fn list(daemon: &Arc<Daemon>) -> Response {
    json_response(StatusCode::OK, &json!({ "secrets": daemon.secret_names() }))
}

pub async fn set(
    daemon: &Arc<Daemon>,
    name: &str,
    request: Request<Incoming>,
    actor: Actor,
) -> Result<Response, ApiError> {
    let body: SecretValue = parse_json(&read_body(request).await?)?;
    daemon.set_secret(name.to_owned(), body.value, actor).await?;
    Ok(json_response(StatusCode::OK, &json!({ "name": name })))
}

pub async fn delete(daemon: &Arc<Daemon>, name: &str, actor: Actor) -> Result<Response, ApiError> {
    if !daemon.delete_secret(name.to_owned(), actor).await? {
        return Err(ApiError::not_found(format!("no secret {name:?}")).with("name", name));
    }
    Ok(json_response(StatusCode::OK, &json!({ "name": name, "deleted": true })))
}
